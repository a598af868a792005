package bus

import (
	"fmt"
	"strconv"
	"strings"
)

// Offset says where a Stream starts reading, on every partition: Earliest,
// Latest or At(n). The sentinels are Kafka's own ListOffsets timestamps.
type Offset int64

const (
	// Earliest is the oldest record still retained.
	Earliest Offset = -2
	// Latest is the end of the log: only events published from now on.
	Latest Offset = -1
)

// At is the absolute offset n (n >= 0) on every partition.
func At(n int64) Offset { return Offset(n) }

// ParseOffset reads "earliest", "latest" or a non-negative integer.
func ParseOffset(s string) (Offset, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "earliest", "oldest", "beginning":
		return Earliest, nil
	case "latest", "newest", "end":
		return Latest, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("offset %q: want earliest, latest or a non-negative number", s)
	}
	return At(n), nil
}

// String renders the offset as ParseOffset reads it.
func (o Offset) String() string {
	switch o {
	case Earliest:
		return "earliest"
	case Latest:
		return "latest"
	}
	return strconv.FormatInt(int64(o), 10)
}

func (o Offset) valid() error {
	if o < Earliest {
		return fmt.Errorf("invalid offset %d", int64(o))
	}
	return nil
}
