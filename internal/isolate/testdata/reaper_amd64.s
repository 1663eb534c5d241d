# The reaper: what PID 1 of a sandbox becomes once its program runs
# (reaper_linux.go). Its code is reaperCode in reaper_linux_amd64.go;
# TestReaperCode assembles this file with GNU as and checks that they are
# the same bytes. To change it: edit here, assemble, copy the bytes over:
#
#	as -o r.o reaper_amd64.s && objdump -d -M intel r.o
#
# It holds no memory of its own past its stack, has no signal handlers (so,
# as PID 1 of its namespace, ignores every signal its sandbox may send),
# and does one thing: reap every child (orphans reparented to it
# included) until the program is reaped, write the program's wait status
# to the status pipe (fd 4) as init's last message, nsinit.Message{Exit},
# and exit, which ends the namespace.
#
# The message is JSON with fixed-width numbers, space-padded (JSON allows
# whitespace before a value): {"exit":{"code":   3,"signal":   0,...}}.
	.intel_syntax noprefix
	# Offsets into the message (the template at the end).
	.equ MSGLEN, 50
	.equ CODEEND, 20
	.equ SIGEND, 34
	.equ CORE, 42
	.text
	.globl _start
_start:
	# The program's pid, in decimal, is the first environment string:
	# envp[0] at rsp + 8*argc + 16. (Not an argument: /proc/1/cmdline
	# stays init's.)
	mov rax, [rsp]
	mov rsi, [rsp+rax*8+16]
	xor ebx, ebx
parse:
	movzx eax, byte ptr [rsi]
	sub eax, '0'
	cmp eax, 9
	ja parsed
	imul ebx, ebx, 10
	add ebx, eax
	inc rsi
	jmp parse
parsed:
	# prctl(PR_SET_NAME, "sandboxd-init"): PID 1 keeps init's name in ps
	# (exec through /proc/self/fd/N named it "N").
	mov eax, 157
	mov edi, 15
	lea rsi, [rip+name]
	syscall
	# The message is built on the stack, from the template below; the
	# wait status lies under it.
	sub rsp, 80
	lea rsi, [rip+template]
	lea rdi, [rsp+16]
	mov ecx, MSGLEN
	rep movsb
	# Pid 0: no program of init's (a fork server's child enters the
	# sandbox, nsinit.Config.Enter); hold instead.
	test ebx, ebx
	jz hold
wait:
	# wait4(-1, &status, 0, NULL): reaps every child, orphans included,
	# until the program is the one reaped.
	mov eax, 61
	mov edi, -1
	mov rsi, rsp
	xor edx, edx
	xor r10d, r10d
	syscall
	cmp eax, -4
	je wait
	test eax, eax
	js nochild
	cmp eax, ebx
	jne wait
	mov eax, [rsp]
	mov edx, eax
	and edx, 0x7f
	jnz signaled
	# Exited: code = status >> 8 & 0xff.
	shr eax, 8
	movzx eax, al
	lea rdi, [rsp+16+CODEEND]
	call putnum
	jmp send
signaled:
	# Killed by signal status & 0x7f; core dumped if status & 0x80.
	test eax, 0x80
	jz 1f
	mov dword ptr [rsp+16+CORE], 0x65757274
	mov byte ptr [rsp+16+CORE+4], ' '
1:	mov eax, edx
	lea rdi, [rsp+16+SIGEND]
	call putnum
nochild:
	# code -1: signaled, or nothing left to wait for (cannot happen
	# before the program is reaped).
	mov word ptr [rsp+16+CODEEND-2], 0x312d
send:
	# write(4, message, MSGLEN); the parent reads it as init's last
	# message. A pipe write under PIPE_BUF is whole.
	mov eax, 1
	mov edi, 4
	lea rsi, [rsp+16]
	mov edx, MSGLEN
	syscall
	# exit_group(0): PID 1's exit ends the namespace.
	mov eax, 231
	xor edi, edi
	syscall

hold:
	# Reap every child (the orphans the run's processes leave) until
	# killed, and never exit: the fork server's child, which reports the
	# run's status, kills PID 1 when the run ends. SIGCHLD is blocked and
	# waited for: rt_sigprocmask(SIG_BLOCK, {SIGCHLD}, NULL, 8).
	mov qword ptr [rsp+8], 0x10000
	mov eax, 14
	xor edi, edi
	lea rsi, [rsp+8]
	xor edx, edx
	mov r10d, 8
	syscall
reapall:
	# wait4(-1, &status, WNOHANG, NULL) until no child has exited.
	mov eax, 61
	mov edi, -1
	mov rsi, rsp
	mov edx, 1
	xor r10d, r10d
	syscall
	test eax, eax
	jg reapall
	# None left to reap (0, or ECHILD while there is no child): wait for
	# the next SIGCHLD, pending if it came in between:
	# rt_sigtimedwait({SIGCHLD}, NULL, NULL, 8).
	mov eax, 128
	lea rdi, [rsp+8]
	xor esi, esi
	xor edx, edx
	mov r10d, 8
	syscall
	jmp reapall

putnum:
	# eax (0..255) in decimal, right-aligned, ending before rdi.
	mov ecx, 10
2:	xor edx, edx
	div ecx
	add dl, '0'
	dec rdi
	mov [rdi], dl
	test eax, eax
	jnz 2b
	ret

name:
	.asciz "sandboxd-init"
template:
	.ascii "{\"exit\":{\"code\":   0,\"signal\":   0,\"core\":false}}\n"
