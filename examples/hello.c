// Shows a compiled run: compile step, then the binary. Run: go run ./cmd/sandboxctl run examples/hello.c
#include <stdio.h>

int main(void) {
	printf("hello from the sandbox, in C\n");
	return 0;
}
