// Package brokerproxy is a TCP proxy on loopback in front of one Kafka
// broker address. It forwards bytes and nothing else, but it reads the
// client-to-broker request framing (int32 size, int16 api key, int16 api
// version, ...) so it can count the requests a broker receives by API key,
// hold them back (Pause: an unreachable network) or delay them (SetDelay: a
// slow one). It is what embedded's RequestCounter and fault hooks are for
// kfake, for any broker, Apache Kafka included.
//
// A broker tells clients where to connect after bootstrap, so a proxy sees
// all of a client's traffic only when the broker advertises the proxy's
// address on that listener: kafkabroker.StartBehindProxy arranges that.
//
// Counting works on PLAINTEXT and SASL_PLAINTEXT listeners: after a
// SaslHandshake v1 (what franz-go and the Java client send) the SASL
// exchange travels in SaslAuthenticate requests, which are counted like
// any other. After a legacy SaslHandshake v0 the tokens are not Kafka
// requests, and the proxy stops counting on that connection. In front of a
// TLS listener it forwards (and pauses and delays) without counting: the
// first bytes are not a plausible request size, so it switches to raw
// forwarding.
package brokerproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxFrame is Kafka's default socket.request.max.bytes: a larger size
// prefix is not a Kafka request (a TLS ClientHello reads as ~369 MB).
const maxFrame = 100 << 20

// dialTimeout bounds the connection to the broker; the client then sees
// its connection closed, as if the broker had refused it.
const dialTimeout = 5 * time.Second

// Proxy forwards connections from its loopback address to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	counts   Counts
	paused   bool
	open     chan struct{} // closed while forwarding; replaced on Pause
	delay    time.Duration
	links    map[*link]struct{}
	accepted int
	closed   bool
	wg       sync.WaitGroup
}

// Start listens on a free loopback port and forwards to target (host:port).
// The target need not be up yet: connections made before it is are closed.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting broker proxy: %w", err)
	}
	return Serve(ln, target), nil
}

// Serve forwards the connections ln accepts to target until Close.
func Serve(ln net.Listener, target string) *Proxy {
	open := make(chan struct{})
	close(open)
	p := &Proxy{ln: ln, target: target, counts: Counts{}, open: open, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p
}

// Addr is the proxy's host:port, what the broker should advertise.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Counts returns the requests forwarded to the broker so far, by API key;
// subtract two snapshots for a window. A request held by Pause is counted
// once it is forwarded.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(Counts, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Accepted is the number of client connections accepted so far: a test can
// prove clients are reused rather than made per operation.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Pause stops forwarding in both directions, as an unreachable network
// would: bytes in flight stay where they are, open connections stall, and
// new connections are accepted but neither connected to the broker nor
// served. Clients see timeouts, not errors.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		p.paused = true
		p.open = make(chan struct{})
	}
}

// Resume forwards again: what was held back goes on, in order.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.open)
	}
}

// Paused reports whether the proxy is paused.
func (p *Proxy) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// SetDelay delays every request by d before it is forwarded (0 turns it
// off), like network latency: requests keep their order, and pipelined
// requests are each delayed by d, not by d times their place in the queue.
// It applies to requests read from now on; responses are not delayed.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// DropConnections closes every open connection (clients see them reset),
// as a broker restart or a network blip would; new ones are accepted.
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	p.mu.Unlock()
	p.DropConnections()
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing broker proxy: %w", err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (too many open files): back off briefly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.links[l] = struct{}{}
		p.accepted++
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// link is one client connection and, once connected, its broker connection.
type link struct {
	client net.Conn
	done   chan struct{}

	mu     sync.Mutex
	server net.Conn
	closed bool
}

func (l *link) setServer(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = c
	return true
}

// close ends both connections; every goroutine of the link then returns.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// waitOpen blocks while the proxy is paused; false means the link closed.
func (p *Proxy) waitOpen(l *link) bool {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
		return true
	case <-l.done:
		return false
	}
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	// A paused proxy accepts but does not connect: to the client it looks
	// like a network that drops packets, not like a refused connection.
	if !p.waitOpen(l) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		return
	}
	if !l.setServer(server) {
		_ = server.Close()
		return
	}
	requests := make(chan frame, 64)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.readRequests(l, requests) }()
	go func() { defer wg.Done(); p.writeRequests(l, server, requests) }()
	p.copyResponses(l, server)
	wg.Wait()
}

// frame is a request (or, in raw mode, a chunk of bytes) read from the
// client, due to be forwarded at due.
type frame struct {
	data []byte
	key  int16 // -1: not a request to count
	due  time.Time
}

// readRequests splits the client's bytes into Kafka requests and queues
// them for writeRequests.
func (p *Proxy) readRequests(l *link, out chan<- frame) {
	defer close(out)
	defer l.close()
	r := bufio.NewReaderSize(l.client, 64<<10)
	raw, counting := false, true
	var size [4]byte
	for {
		f := frame{key: -1}
		if raw {
			buf := make([]byte, 32<<10)
			n, err := r.Read(buf)
			if n == 0 && err != nil {
				return
			}
			f.data = buf[:n]
		} else {
			if _, err := io.ReadFull(r, size[:]); err != nil {
				return
			}
			n := int32(binary.BigEndian.Uint32(size[:]))
			if n < 0 || n > maxFrame {
				// Not Kafka framing (TLS, most likely): forward as is.
				raw = true
				f.data = append([]byte(nil), size[:]...)
			} else {
				f.data = make([]byte, 4+int(n))
				copy(f.data, size[:])
				if _, err := io.ReadFull(r, f.data[4:]); err != nil {
					return
				}
				if counting && n >= 4 {
					f.key = int16(binary.BigEndian.Uint16(f.data[4:6]))
					version := int16(binary.BigEndian.Uint16(f.data[6:8]))
					if f.key == int16(kmsg.SASLHandshake) && version == 0 {
						// Raw SASL tokens follow, framed but headerless.
						counting = false
					}
				}
			}
		}
		p.mu.Lock()
		f.due = time.Now().Add(p.delay)
		p.mu.Unlock()
		select {
		case out <- f:
		case <-l.done:
			return
		}
	}
}

// writeRequests forwards queued requests once due and while not paused,
// and counts them as they reach the broker.
func (p *Proxy) writeRequests(l *link, server net.Conn, in <-chan frame) {
	for {
		var f frame
		select {
		case next, ok := <-in:
			if !ok {
				return
			}
			f = next
		case <-l.done:
			return
		}
		if wait := time.Until(f.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
		}
		if !p.waitOpen(l) {
			return
		}
		if _, err := server.Write(f.data); err != nil {
			l.close()
			return
		}
		if f.key >= 0 {
			p.mu.Lock()
			p.counts[f.key]++
			p.mu.Unlock()
		}
	}
}

// copyResponses forwards the broker's bytes to the client while not paused.
func (p *Proxy) copyResponses(l *link, server net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if !p.waitOpen(l) {
				return
			}
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
