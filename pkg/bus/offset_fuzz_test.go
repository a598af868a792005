package bus

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseOffset: any text parses or is refused without panicking; what
// parses is a valid offset that reads back from its String, and a number
// parses to itself.
func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"earliest", "LATEST", " oldest ", "end", "0", "42", "-1", "-2", "+7", "007", "9223372036854775807", "9223372036854775808", "", "١٢", "0x10", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOffset(s)
		if err != nil {
			if o != 0 {
				t.Fatalf("refused %q but returned %v", s, o)
			}
			return
		}
		if o.valid() != nil {
			t.Fatalf("ParseOffset(%q) = %d, which is not a valid offset", s, int64(o))
		}
		back, err := ParseOffset(o.String())
		if err != nil || back != o {
			t.Fatalf("ParseOffset(%q) = %v, but its String %q reads back as %v, %v", s, o, o.String(), back, err)
		}
		if n, nerr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); nerr == nil && Offset(n) != o {
			t.Fatalf("ParseOffset(%q) = %v, want the number %d", s, o, n)
		}
		if o < 0 && o != Earliest && o != Latest {
			t.Fatalf("ParseOffset(%q) = %d", s, int64(o))
		}
	})
}
