//go:build unix && !linux

package faultstack

import "syscall"

// sysProcAttr puts an operator in its own process group; only Linux can
// also tie its life to the test binary's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
