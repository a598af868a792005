package localstack

import "syscall"

// sysProcAttr puts a child in its own process group, and has the kernel
// send it SIGTERM should the parent die without stopping it (a crash or
// SIGKILL), so no broker or operator is left running behind a dead demo.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
