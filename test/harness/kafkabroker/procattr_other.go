//go:build unix && !linux

package kafkabroker

import "syscall"

// sysProcAttr puts java in its own process group, so a Ctrl-C in the
// terminal reaches only the test binary, which stops the broker itself.
// (Only Linux can tie the child's life to the parent's.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
