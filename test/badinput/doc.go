// Package badinput is a test tier: a corpus of bad inputs (testdata/, one
// YAML file per case) for Topics, Subscriptions, ChangeTickets and the
// hmsbus CLI, run by one table test against the real kube-apiserver, the
// embedded broker and the real operator. Each case says what must happen
// (rejected at admission, a status condition, a CLI error) and the test
// also checks that nothing of the case reached the broker. See README.md
// for the case format.
package badinput
