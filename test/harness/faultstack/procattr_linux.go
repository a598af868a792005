package faultstack

import "syscall"

// sysProcAttr puts an operator in its own process group (a Ctrl-C in the
// terminal reaches only the test, which stops it in order) and has the
// kernel SIGKILL it should the test binary die without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
