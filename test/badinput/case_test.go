package badinput

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"
)

// A case file is a text/template (for the namespace names, times and long
// generated lists) that renders to YAML of this shape. README.md documents
// it; decoding is strict, so a misspelt key fails the case instead of being
// ignored.
type caseFile struct {
	// Expect is what must happen when the action runs.
	Expect expectation `json:"expect"`
	// As is the persona of the action (default alice).
	As string `json:"as,omitempty"`
	// Setup runs first, in order; every step must succeed.
	Setup []step `json:"setup,omitempty"`
	// Action is the step whose outcome is checked. Object is shorthand for
	// an action that creates it (or, with kind CLI, runs hmsbus).
	Action *step          `json:"action,omitempty"`
	Object map[string]any `json:"object,omitempty"`
	// After runs once the action has succeeded and before the outcome is
	// checked: typically a wait that proves the operator has seen the
	// action (Approved=True), so the check cannot pass merely by being
	// early.
	After []step `json:"after,omitempty"`
}

type expectation struct {
	// Outcome: rejected (the API server refuses the action), condition
	// (the action succeeds and the object reaches a condition), exit-error
	// or exit-ok (a CLI run).
	Outcome string `json:"outcome"`
	// Reason is the API status reason (Invalid, Forbidden, NotFound) for
	// rejected, the condition's reason for condition.
	Reason string `json:"reason,omitempty"`
	// Field must appear in the error message (rejected).
	Field string `json:"field,omitempty"`
	// Message must appear in the error, the condition message, or the
	// CLI's stderr (stdout for exit-ok).
	Message string `json:"message,omitempty"`
	// NotMessage must not appear in the error (rejected): an unclear part
	// that once was there, such as a CEL evaluation error.
	NotMessage string `json:"notMessage,omitempty"`
	// Type and Status of the condition (default Ready, "False").
	Type   string `json:"type,omitempty"`
	Status string `json:"status,omitempty"`
	// Stalled, when given, says whether Stalled=True (with the same
	// reason) must accompany the condition.
	Stalled *bool `json:"stalled,omitempty"`
	// Object is the object whose condition is checked; default: the one
	// the action created, updated or deleted.
	Object *objectRef `json:"object,omitempty"`
	// Broker is what the case may leave on the broker; anything else of
	// the case's names and principals must be absent.
	Broker brokerExpect `json:"broker,omitempty"`
}

type brokerExpect struct {
	// Topics must exist on the broker (broker names).
	Topics []string `json:"topics,omitempty"`
	// Partitions of some of those topics.
	Partitions map[string]int32 `json:"partitions,omitempty"`
	// Absent are more broker names that must not exist, besides the
	// names of the case's Topics.
	Absent []string `json:"absent,omitempty"`
	// Users are SCRAM users (<namespace>.<subscription>) that must exist.
	Users []string `json:"users,omitempty"`
	// ACLs maps a user to the broker topics its topic ACLs must name,
	// exactly; a user not listed must have no ACL at all.
	ACLs map[string][]string `json:"acls,omitempty"`
}

type objectRef struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// step is one thing a case does; exactly one of the action fields is set.
type step struct {
	// As overrides the persona for this step.
	As string `json:"as,omitempty"`

	// Ticket files a ChangeTicket in the persona's name.
	Ticket *ticketStep `json:"ticket,omitempty"`
	// Create creates an object (namespace defaults to the case's).
	Create map[string]any `json:"create,omitempty"`
	// Update merge-patches an object (or its status subresource).
	Update *updateStep `json:"update,omitempty"`
	// Delete deletes an object.
	Delete *objectRef `json:"delete,omitempty"`
	// Approve and Deny record rita's review the way `hmsbus approve` does
	// (an approval pins the covered specs as they are now).
	Approve string `json:"approve,omitempty"`
	Deny    string `json:"deny,omitempty"`
	// Review writes an approval or denial naming someone, as the persona,
	// straight to the status subresource, so admission judges it.
	Review *reviewStep `json:"review,omitempty"`
	// Wait waits for a condition.
	Wait *waitStep `json:"wait,omitempty"`
	// CLI runs hmsbus.
	CLI *cliStep `json:"cli,omitempty"`
}

type ticketStep struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Covers lists Kind/name or Kind/name:Op,Op entries.
	Covers []string `json:"covers"`
	// NotAfter is a Go duration from now (default 1h; negative: past).
	NotAfter          string `json:"notAfter,omitempty"`
	RequiredApprovals int32  `json:"requiredApprovals,omitempty"`
}

type updateStep struct {
	objectRef `json:",inline"`
	Patch     map[string]any `json:"patch"`
	// Status patches the status subresource.
	Status bool `json:"status,omitempty"`
}

type reviewStep struct {
	Ticket    string `json:"ticket"`
	Namespace string `json:"namespace,omitempty"`
	// Approve or Deny is the reviewer name written into the entry.
	Approve string `json:"approve,omitempty"`
	Deny    string `json:"deny,omitempty"`
}

type waitStep struct {
	objectRef `json:",inline"`
	Type      string `json:"type,omitempty"`
	Status    string `json:"status,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

type cliStep struct {
	Args  []string          `json:"args"`
	Stdin string            `json:"stdin,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
}

// loadedCase is a case file with its header, before rendering.
type loadedCase struct {
	name   string // file name without .yaml
	path   string
	title  string   // the "# case:" line
	bugs   []string // "# BUG:" lines
	source string
}

var headerCase = regexp.MustCompile(`(?m)^#\s*case:\s*(.+)$`)
var headerBug = regexp.MustCompile(`(?m)#\s*BUG:\s*(.+)$`)

// loadCases reads every testdata/*.yaml file.
func loadCases(dir string) ([]loadedCase, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []loadedCase
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		src := string(b)
		m := headerCase.FindStringSubmatch(src)
		if m == nil {
			return nil, fmt.Errorf("%s: no '# case:' header saying what the case is", p)
		}
		lc := loadedCase{name: strings.TrimSuffix(filepath.Base(p), ".yaml"), path: p, title: strings.TrimSpace(m[1]), source: src}
		for _, bm := range headerBug.FindAllStringSubmatch(src, -1) {
			lc.bugs = append(lc.bugs, strings.TrimSpace(bm[1]))
		}
		out = append(out, lc)
	}
	return out, nil
}

// templateData is what a case file's template sees.
type templateData struct {
	NS  string // the case's namespace
	NS2 string // a second namespace, for cross-namespace cases
}

var funcs = template.FuncMap{
	// repeat "a" 250: a long string.
	"repeat": strings.Repeat,
	// seq 101: 1..101, for long lists.
	"seq": func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	},
	// longname .NS 251: a valid Kubernetes object name (DNS subdomain) of
	// exactly n characters that starts with the prefix, for names too long
	// for a broker topic.
	"longname": func(prefix string, n int) (string, error) {
		name := prefix
		for len(name) < n {
			room := n - len(name) - 1 // after the dot
			if room < 1 {
				break
			}
			label := min(63, room)
			if room-label == 1 {
				label-- // leave room for ".x": a name cannot end in a dot
			}
			name += "." + strings.Repeat("x", label)
		}
		if len(name) != n {
			return "", fmt.Errorf("longname: cannot make %d characters from %q", n, prefix)
		}
		return name, nil
	},
	// time "-1h": RFC 3339 time relative to now.
	"time": func(d string) (string, error) {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return "", err
		}
		return time.Now().Add(dur).UTC().Format(time.RFC3339), nil
	},
}

// usesNS2 tells whether a case needs the second namespace.
func (lc loadedCase) usesNS2() bool { return strings.Contains(lc.source, ".NS2") }

// render executes the template and decodes the result strictly.
func (lc loadedCase) render(data templateData) (*caseFile, error) {
	tpl, err := template.New(lc.name).Funcs(funcs).Option("missingkey=error").Parse(lc.source)
	if err != nil {
		return nil, fmt.Errorf("parsing template: %w", err)
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("rendering template: %w", err)
	}
	var c caseFile
	if err := yaml.UnmarshalStrict(buf.Bytes(), &c); err != nil {
		return nil, fmt.Errorf("decoding case: %w", err)
	}
	if err := c.normalise(); err != nil {
		return nil, err
	}
	return &c, nil
}

// normalise fills defaults and checks the case is well formed, so a broken
// case file fails loudly instead of asserting nothing.
func (c *caseFile) normalise() error {
	if c.As == "" {
		c.As = "alice"
	}
	if c.Object != nil {
		if c.Action != nil {
			return fmt.Errorf("a case has either object or action, not both")
		}
		if c.Object["kind"] == "CLI" {
			cli, err := decodeCLI(c.Object)
			if err != nil {
				return err
			}
			c.Action = &step{CLI: cli}
		} else {
			c.Action = &step{Create: c.Object}
		}
	}
	if c.Action == nil {
		return fmt.Errorf("a case needs an object or an action")
	}
	for i := range c.Setup {
		if err := c.Setup[i].check(); err != nil {
			return fmt.Errorf("setup step %d: %w", i+1, err)
		}
	}
	if err := c.Action.check(); err != nil {
		return fmt.Errorf("action: %w", err)
	}
	for i := range c.After {
		if err := c.After[i].check(); err != nil {
			return fmt.Errorf("after step %d: %w", i+1, err)
		}
	}
	if len(c.After) > 0 && c.Expect.Outcome != "condition" {
		return fmt.Errorf("after steps are for condition cases")
	}
	e := &c.Expect
	isCLI := c.Action.CLI != nil
	switch e.Outcome {
	case "rejected":
		if isCLI {
			return fmt.Errorf("a CLI case expects exit-error or exit-ok")
		}
		if e.Message == "" {
			return fmt.Errorf("a rejected case must say which message it expects")
		}
	case "condition":
		if isCLI {
			return fmt.Errorf("a CLI case expects exit-error or exit-ok")
		}
		if e.Reason == "" {
			return fmt.Errorf("a condition case must name the reason")
		}
		if e.Type == "" {
			e.Type = "Ready"
		}
		if e.Status == "" {
			e.Status = "False"
		}
		if e.Object == nil {
			ref, ok := c.Action.target()
			if !ok {
				return fmt.Errorf("a condition case whose action does not name an object needs expect.object")
			}
			e.Object = &ref
		}
	case "exit-error", "exit-ok":
		if !isCLI {
			return fmt.Errorf("outcome %s is for CLI cases", e.Outcome)
		}
		if e.Message == "" {
			return fmt.Errorf("a CLI case must say which message it expects")
		}
	default:
		return fmt.Errorf("unknown outcome %q (rejected, condition, exit-error, exit-ok)", e.Outcome)
	}
	for _, p := range append([]string{c.As}, stepPersonas(c)...) {
		if _, ok := personas[p]; !ok && p != "admin" {
			return fmt.Errorf("unknown persona %q", p)
		}
	}
	return nil
}

func stepPersonas(c *caseFile) []string {
	var out []string
	for _, s := range append(append(slices.Clone(c.Setup), *c.Action), c.After...) {
		if s.As != "" {
			out = append(out, s.As)
		}
	}
	return out
}

func decodeCLI(obj map[string]any) (*cliStep, error) {
	obj = maps.Clone(obj)
	delete(obj, "kind")
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var cli cliStep
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cli); err != nil {
		return nil, fmt.Errorf("CLI object: %w", err)
	}
	return &cli, nil
}

func (s *step) check() error {
	n := 0
	for _, set := range []bool{s.Ticket != nil, s.Create != nil, s.Update != nil, s.Delete != nil, s.Approve != "", s.Deny != "", s.Review != nil, s.Wait != nil, s.CLI != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("a step does exactly one thing, this one does %d", n)
	}
	if s.Review != nil && (s.Review.Approve == "") == (s.Review.Deny == "") {
		return fmt.Errorf("review: set approve or deny")
	}
	return nil
}

// target is the object a step acts on, if it names one.
func (s *step) target() (objectRef, bool) {
	switch {
	case s.Create != nil:
		md, _ := s.Create["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		ns, _ := md["namespace"].(string)
		kind, _ := s.Create["kind"].(string)
		return objectRef{Kind: kind, Name: name, Namespace: ns}, name != ""
	case s.Update != nil:
		return s.Update.objectRef, true
	case s.Delete != nil:
		return *s.Delete, true
	}
	return objectRef{}, false
}
