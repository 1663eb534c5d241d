package runtimes_test

import (
	"errors"
	"fmt"

	"github.com/sandboxd/sandboxd/internal/runtimes"
)

func ExampleRegistry_ForFile() {
	g := runtimes.Default()
	rt, err := g.ForFile("src/main.c")
	if err != nil {
		panic(err)
	}
	fmt.Println(rt.Name)
	fmt.Println(rt.CompileArgv("src/main.c"))
	fmt.Println(rt.RunArgv("src/main.c", []string{"--n", "{entry}"}))

	_, err = g.ForFile("main.cob")
	fmt.Println(errors.Is(err, runtimes.ErrUnknownRuntime))
	fmt.Println(err)
	// Output:
	// c
	// [/usr/bin/gcc -O2 -std=gnu17 -o .sandboxd/bin/program src/main.c -lm]
	// [./.sandboxd/bin/program --n {entry}]
	// true
	// unknown runtime for "main.cob": file extension ".cob" is not recognised; name one with --runtime (available: bash, c, c++, javascript, python, ruby, sh)
}

func ExampleRegistry_Lookup() {
	g := runtimes.Default()
	rt, _ := g.Lookup("PY")
	fmt.Println(rt.Name, rt.RunArgv("main.py", []string{"a b"}), rt.Env)

	_, err := g.Lookup("cobol")
	fmt.Println(err)
	// Output:
	// python [/usr/bin/python3 main.py a b] [PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1]
	// unknown runtime "cobol": available: bash, c, c++, javascript, python, ruby, sh
}
