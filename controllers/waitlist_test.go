package controllers

import (
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
)

func TestWaitlistWakesExactlyTheObjectsWaitingForAName(t *testing.T) {
	var w waitlist
	k := claims{waiting: &w}
	topic := func(ns, name string) *busv1.Topic {
		return &busv1.Topic{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)}}
	}
	a, b, c := topic("a", "t"), topic("b", "t"), topic("c", "other")

	// An object signs up before it reads the claim; it stays on the list
	// unless it turned out to hold the name.
	held := claimOutcome{owned: true}
	notHeld := claimOutcome{}
	var noErr error
	failed := errors.New("reading claim: unavailable")
	k.wait(busv1.ClaimBrokerTopic, "Fees", a)(&held, &noErr)
	k.wait(busv1.ClaimBrokerTopic, "Fees", b)(&notHeld, &noErr)
	k.wait(busv1.ClaimBrokerTopic, "Other", c)(&held, &failed) // failed: still waiting

	wake := wakeWaiters(&w, busv1.ClaimBrokerTopic)
	claim := func(kind busv1.ClaimKind, name string) *busv1.NameClaim {
		return &busv1.NameClaim{Spec: busv1.NameClaimSpec{Kind: kind, Name: name}}
	}
	if got := wake(context.Background(), claim(busv1.ClaimConsumerGroup, "Fees")); got != nil {
		t.Fatalf("a claim of a kind this controller does not handle woke %v", got)
	}
	got := wake(context.Background(), claim(busv1.ClaimBrokerTopic, "Fees"))
	if len(got) != 1 || got[0].Namespace != "b" || got[0].Name != "t" {
		t.Fatalf("woke %v; want only b/t, which does not hold the name", got)
	}
	// Woken objects leave the list: they sign up again if they still wait.
	if again := wake(context.Background(), claim(busv1.ClaimBrokerTopic, "Fees")); len(again) != 0 {
		t.Fatalf("woke %v a second time without signing up again", again)
	}
	if got := wake(context.Background(), claim(busv1.ClaimBrokerTopic, "Other")); len(got) != 1 || got[0].Namespace != "c" {
		t.Fatalf("an object whose read failed must still be woken, got %v", got)
	}
	// The event of a claim its owner just created does not wake the owner
	// (still signed up while it creates the claim), only the others.
	k.wait(busv1.ClaimBrokerTopic, "Race", a)(&notHeld, &failed)
	k.wait(busv1.ClaimBrokerTopic, "Race", b)(&notHeld, &noErr)
	own := claim(busv1.ClaimBrokerTopic, "Race")
	own.Spec.Owner.UID = string(a.UID)
	if got := wake(context.Background(), own); len(got) != 1 || got[0].Namespace != "b" {
		t.Fatalf("the owner's own claim woke %v; want only b/t", got)
	}
	if n := len(w.m); n != 0 {
		t.Fatalf("%d names still have waiters", n)
	}
	// Without a waitlist nothing is recorded and nothing breaks.
	claims{}.wait(busv1.ClaimBrokerTopic, "Fees", a)(&notHeld, &noErr)
}
