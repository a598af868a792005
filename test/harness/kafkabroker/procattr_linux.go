package kafkabroker

import "syscall"

// sysProcAttr puts java in its own process group (Kill signals the group),
// and has the kernel SIGKILL it should the test binary die without
// stopping it (a panic, a timeout, SIGKILL), so no broker outlives its test
// run holding ports and memory. Init reaps it, so it leaves no zombie.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
