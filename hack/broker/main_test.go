package main

import "testing"

func TestParseLogLevel(t *testing.T) {
	for _, s := range []string{"none", "error", "warn", "info", "DEBUG"} {
		if _, err := parseLogLevel(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := parseLogLevel("loud"); err == nil {
		t.Error("loud: no error")
	}
}

func TestParsePorts(t *testing.T) {
	got, err := parsePorts("9092, 0,9094")
	if err != nil || len(got) != 3 || got[1] != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "x", "9092,,1", "70000", "-1"} {
		if _, err := parsePorts(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
