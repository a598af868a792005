// Package fault is a test tier: the fault suite. Each case applies a batch
// of at least 500 Topics and 200 Subscriptions the way teams and reviewers
// would (tickets filed, objects created, then approved), breaks one part of
// the system while the batch is in flight (the broker killed, emptied,
// unreachable or slow, one admin call failing, the operator killed, the
// leader killed, the API server or etcd restarted, a ticket denied or
// expiring), repairs it, waits for convergence and runs one invariant
// checker shared by every case: objects in their approved state, no data
// lost, no orphan or duplicate grant, nothing on the broker that no valid
// approval covered, status truthful throughout, and exactly one audit
// record per broker change with an intact hash chain.
//
// The operator runs as bin/manager processes (run `make build` after
// changing it), against the broker HMSBUS_TEST_BROKER chooses; cases that
// only one broker can stage are part of that broker's pass only. See the
// README's RELIABILITY section for what each case proves.
package fault
