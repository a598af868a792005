package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	busv1 "github.com/hms-platform/bus-operator/api/v1"
	"github.com/hms-platform/bus-operator/internal/review"
)

// BenchmarkScale's settings. Each flag also reads an environment variable,
// so `make bench BENCH_N=2000` works without -args.
var (
	scaleN       = flag.Int("scale.n", envInt("BENCH_N", 10000), "Topics (and, unless -scale.subs, Subscriptions) BenchmarkScale declares")
	scaleSubs    = flag.Int("scale.subs", envInt("BENCH_SUBS", -1), "Subscriptions BenchmarkScale declares (-1: same as -scale.n, 0: skip)")
	scaleOut     = flag.String("scale.out", os.Getenv("BENCH_OUT"), "where BenchmarkScale writes its figures as JSON (default bin/bench/results.json)")
	scaleManager = flag.String("scale.manager", os.Getenv("BENCH_MANAGER"), "operator binary BenchmarkScale runs (default bin/manager)")
	scaleLabel   = flag.String("scale.label", os.Getenv("BENCH_LABEL"), "label stored with the figures, e.g. before or after")
	scaleIdle    = flag.Duration("scale.idle", envDuration("BENCH_IDLE", time.Minute), "idle window in which BenchmarkScale counts writes")
	scaleArgs    = flag.String("scale.managerargs", os.Getenv("BENCH_MANAGER_ARGS"), "extra operator flags, space-separated (e.g. --max-concurrent-reconciles=32)")
	scaleCPU     = flag.Duration("scale.cpuprofile", envDuration("BENCH_CPUPROFILE", 30*time.Second), "length of the operator CPU profile taken from the start of the Topic apply (0: none)")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// writers is how many requests the floor and the benchmark's own applies
// have in flight, as a GitOps tool applying a directory would.
const writers = 16

// scaleResults are BenchmarkScale's figures, as saved in JSON.
type scaleResults struct {
	Label       string `json:"label,omitempty"`
	Manager     string `json:"manager"`
	ManagerArgs string `json:"managerArgs,omitempty"`
	// LoadAverage is the machine's load average (1, 5, 15 minutes) at the
	// start and at the end: other work on the machine shows up there.
	LoadAverage   []string           `json:"loadAverage,omitempty"`
	Started       time.Time          `json:"started"`
	TotalSeconds  float64            `json:"totalSeconds"`
	Topics        *fleetFig          `json:"topics,omitempty"`
	Subscriptions *fleetFig          `json:"subscriptions,omitempty"`
	Tickets       *ticketFig         `json:"tickets,omitempty"`
	WaitingTicket *waitingFig        `json:"waitingTicket,omitempty"`
	KubectlMs     map[string]float64 `json:"kubectlCreateMsMedian,omitempty"`
	Idle          *idleFig           `json:"idle,omitempty"`
	Memory        map[string]memFig  `json:"memory,omitempty"`
	Profiles      map[string]string  `json:"profiles,omitempty"`
}

// fleetFig is one kind at scale: the floor, the operator, and where its
// requests went.
type fleetFig struct {
	N              int     `json:"n"`
	FloorSeconds   float64 `json:"floorSeconds"`
	FloorPerSecond float64 `json:"floorPerSecond"`
	// OperatorSeconds runs from the first ticket filed to the last object
	// Ready; Ratio is OperatorSeconds / FloorSeconds.
	OperatorSeconds   float64 `json:"operatorSeconds"`
	OperatorPerSecond float64 `json:"operatorPerSecond"`
	Ratio             float64 `json:"ratio"`
	// The parts: the creates (while tickets are filed and approved in
	// step), and the tail from the last approval to the last Ready.
	CreatesSeconds         float64 `json:"createsSeconds"`
	LastApprovalToReadySec float64 `json:"lastApprovalToReadySeconds"`
	TicketFileMsP50        float64 `json:"ticketFileMsP50"`
	TicketApproveMsP50     float64 `json:"ticketApproveMsP50"`
	TicketApproveMsMax     float64 `json:"ticketApproveMsMax"`

	// Per object: API requests by "verb resource[/subresource]" (all
	// clients; the benchmark's own are its creates, tickets and watch),
	// the operator's own requests by method, conflicts, broker requests.
	APIPerObject      map[string]float64 `json:"apiRequestsPerObject"`
	APIMeanMs         map[string]float64 `json:"apiMeanLatencyMs"`
	APIConflicts      map[string]float64 `json:"apiConflicts,omitempty"`
	OperatorPerObject map[string]float64 `json:"operatorRequestsPerObject"`
	BrokerPerObject   map[string]float64 `json:"brokerRequestsPerObject"`
	ReconcilesPerObj  map[string]float64 `json:"reconcilesPerObject"`
	QueueMaxDepth     map[string]float64 `json:"queueMaxDepth"`
	QueueWaitMsMean   map[string]float64 `json:"queueWaitMsMean"`
	WorkMsMean        map[string]float64 `json:"workMsMean"`
	ObjectsReady      int                `json:"objectsReady"`
}

type ticketFig struct {
	// Filing and approving tickets of 1 and of 100 covers, each over 100
	// existing Topics, one at a time, on an otherwise idle operator.
	FileMsP50    map[string]float64 `json:"fileMsP50"`
	ApproveMsP50 map[string]float64 `json:"approveMsP50"`
	// Conflicts (409) on ChangeTickets while approving: the operator's
	// ticket status write racing the reviewer's.
	Conflicts map[string]float64 `json:"conflicts"`
	// The API server's mean latency of ChangeTicket requests by verb.
	APIMeanMs map[string]float64 `json:"apiMeanLatencyMs"`
}

type waitingFig struct {
	Topics                 int     `json:"topics"`
	ApprovalToAllReadyMs   float64 `json:"approvalToAllReadyMs"`
	ApprovalWriteMs        float64 `json:"approvalWriteMs"`
	ApprovalToFirstReadyMs float64 `json:"approvalToFirstReadyMs"`
}

type idleFig struct {
	Seconds      float64            `json:"seconds"`
	APIWrites    map[string]float64 `json:"apiWrites"`
	BrokerWrites int                `json:"brokerWrites"`
	BrokerReads  int                `json:"brokerReads"`
	Reconciles   map[string]float64 `json:"reconciles"`
}

type memFig struct {
	Objects int     `json:"objects"`
	PeakMB  float64 `json:"peakRSSMB"`
	RSSMB   float64 `json:"rssMB"`
}

// BenchmarkScale is issue 11's side-by-side measurement, in one run: the
// floor (a bare client creating N Topics and writing their status once, 16
// requests at a time, no client-side rate limit) and the operator (bin/manager
// as its own process and user) taking N Topics, 100 per ChangeTicket, from
// the first ticket filed to all Ready; the same for Subscriptions (whose
// floor also creates a Secret each); then tickets of 1 and 100 covers,
// 100 Topics waiting for one ticket, kubectl create latencies, an idle
// window, and the operator's peak RSS. It runs once whatever -benchtime
// says; run it with
//
//	make bench BENCH_N=2000
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 3h ./test/bench/ -args -scale.n=2000
func BenchmarkScale(b *testing.B) {
	root, err := repoRoot()
	must(b, err)
	bin := *scaleManager
	if bin == "" {
		bin = filepath.Join(root, "bin", "manager")
	}
	out := *scaleOut
	if out == "" {
		out = filepath.Join(root, "bin", "bench", "results.json")
	}
	n, subs := *scaleN, *scaleSubs
	if subs < 0 {
		subs = n
	}
	dir := filepath.Join(filepath.Dir(out), "scale-"+strings.ReplaceAll(orLabel(*scaleLabel), "/", "-"))
	_ = os.RemoveAll(dir)
	must(b, os.MkdirAll(dir, 0o755))
	for b.Loop() {
		res := scaleResults{Label: *scaleLabel, Manager: bin, ManagerArgs: *scaleArgs, Started: time.Now().UTC(), Memory: map[string]memFig{}, Profiles: map[string]string{}}
		res.LoadAverage = append(res.LoadAverage, loadAverage())
		runScale(b, dir, bin, n, subs, &res)
		res.LoadAverage = append(res.LoadAverage, loadAverage())
		res.TotalSeconds = time.Since(res.Started).Seconds()
		data, err := json.MarshalIndent(res, "", "  ")
		must(b, err)
		must(b, os.MkdirAll(filepath.Dir(out), 0o755))
		must(b, os.WriteFile(out, data, 0o644))
		printScale(dir, &res)
		report(dir, "figures saved to %s; report, logs and profiles in %s", out, dir)
	}
}

func orLabel(l string) string {
	if l == "" {
		return "run"
	}
	return l
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

func runScale(b *testing.B, dir, bin string, n, subs int, res *scaleResults) {
	ctx := benchCtx(b, 4*time.Hour)
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s scale: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	progress("starting control plane and broker in %s", dir)
	s, err := startScaleStack(dir)
	must(b, err)
	defer s.stop()

	// The floors run before the operator exists, on a control plane of
	// their own, so nothing else loads the API server and the operator
	// never sees their objects.
	res.Topics = &fleetFig{N: n}
	progress("floor: %d Topics created and their status written once, %d at a time", n, writers)
	res.Topics.FloorSeconds = s.floorTopics(b, ctx, n).Seconds()
	res.Topics.FloorPerSecond = float64(n) / res.Topics.FloorSeconds
	if subs > 0 {
		res.Subscriptions = &fleetFig{N: subs}
		progress("floor: %d Subscriptions created, status written once and a Secret created each", subs)
		res.Subscriptions.FloorSeconds = s.floorSubscriptions(b, ctx, subs).Seconds()
		res.Subscriptions.FloorPerSecond = float64(subs) / res.Subscriptions.FloorSeconds
	}

	progress("starting a fresh control plane for the operator")
	must(b, s.startControlPlane("operator"))
	progress("starting the operator %s as user %s", bin, operatorUser)
	must(b, s.startManager(bin, strings.Fields(*scaleArgs)...))

	progress("operator: %d Topics, 100 per ChangeTicket (file, create, approve)", n)
	s.operatorFleet(b, ctx, busv1.KindTopic, n, res.Topics, res, progress)
	s.memory(b, res, "topics", n)
	if subs > 0 {
		progress("operator: %d Subscriptions, 100 per ChangeTicket", subs)
		s.operatorFleet(b, ctx, busv1.KindSubscription, subs, res.Subscriptions, res, progress)
		s.memory(b, res, "topics+subscriptions", n+subs)
	}
	if path, top, err := s.profile(ctx, "heap", "heap.pprof", "-sample_index=inuse_space"); err != nil {
		b.Logf("heap profile: %v", err)
	} else if path != "" {
		res.Profiles["heap"] = path
		report(dir, "operator heap in use with %d objects (%s):\n%s", n+subs, path, top)
	}

	progress("100 Topics waiting for one ticket")
	res.WaitingTicket = s.waitingTicket(b, ctx)
	progress("tickets of 1 and 100 covers")
	res.Tickets = s.ticketSizes(b, ctx)
	progress("kubectl create latencies")
	res.KubectlMs = s.kubectlLatencies(b, ctx)
	progress("idle window of %s", *scaleIdle)
	res.Idle = s.idle(b, ctx, *scaleIdle)
	s.memory(b, res, "end", n+subs)
	must(b, s.mgr.running())
}

// memory records the operator's peak and current RSS.
func (s *scaleStack) memory(b *testing.B, res *scaleResults, at string, objects int) {
	hwm, rss, err := procStatus(s.mgr.pid())
	must(b, err)
	res.Memory[at] = memFig{Objects: objects, PeakMB: hwm, RSSMB: rss}
}

// floorTopics creates n Topics and writes each one's status once (the
// status the operator writes when a Topic is Ready), 16 at a time.
func (s *scaleStack) floorTopics(b *testing.B, ctx context.Context, n int) time.Duration {
	ns := s.newNamespace(b, ctx, "floor-topics")
	start := time.Now()
	must(b, parallel(n, func(i int) error {
		name := fmt.Sprintf("t-%05d", i)
		tp := newTopic(ns, name, "chg-floor")
		if err := s.requester.Create(ctx, tp); err != nil {
			return fmt.Errorf("creating Topic %s: %w", name, err)
		}
		before := tp.DeepCopy()
		now := metav1.Now()
		tp.Status = busv1.TopicStatus{
			ObservedGeneration: tp.Generation, TopicName: tp.Spec.TopicName, TopicID: "AAAAAAAAAAAAAAAAAAAAAA",
			Partitions: 3, ReplicationFactor: 3, Config: map[string]string{"retention.ms": "604800000", "cleanup.policy": "delete"},
			AppliedTicket:    &busv1.AppliedTicket{Name: "chg-floor", Reference: "CHG-FLOOR", ApprovedBy: []string{reviewer}},
			ApprovedSpecHash: strings.Repeat("0", 64), ClaimedAt: &now,
			Conditions: []metav1.Condition{
				{Type: busv1.ConditionReady, Status: metav1.ConditionTrue, Reason: busv1.ReasonSucceeded, Message: "topic " + name + ": 3 partitions, replication factor 3, 2 config overrides", LastTransitionTime: now, ObservedGeneration: tp.Generation},
				{Type: busv1.ConditionApproved, Status: metav1.ConditionTrue, Reason: busv1.ReasonTicketApproved, Message: "approved by ChangeTicket chg-floor", LastTransitionTime: now, ObservedGeneration: tp.Generation},
			},
		}
		if err := s.operatorAPI.Status().Patch(ctx, tp, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("writing status of Topic %s: %w", name, err)
		}
		return nil
	}))
	return time.Since(start)
}

// floorSubscriptions creates n Subscriptions, writes each one's status
// once and creates a Secret for each, 16 at a time.
func (s *scaleStack) floorSubscriptions(b *testing.B, ctx context.Context, n int) time.Duration {
	ns := s.newNamespace(b, ctx, "floor-subs")
	start := time.Now()
	must(b, parallel(n, func(i int) error {
		name := fmt.Sprintf("svc-%05d", i)
		sub := newSubscription(ns, name, "events", "chg-floor")
		if err := s.requester.Create(ctx, sub); err != nil {
			return fmt.Errorf("creating Subscription %s: %w", name, err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-bus-credentials",
				Labels:          map[string]string{"app.kubernetes.io/managed-by": "hmsbus-operator"},
				Annotations:     map[string]string{"bus.hms.io/password-sha256": strings.Repeat("0", 64)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: busv1.GroupVersion.String(), Kind: "Subscription", Name: name, UID: sub.UID, Controller: ptr.To(true)}}},
			Data: map[string][]byte{
				"bootstrap.servers": []byte("127.0.0.1:9092"), "security.protocol": []byte("SASL_PLAINTEXT"),
				"sasl.mechanism": []byte("SCRAM-SHA-512"), "username": []byte(ns + "." + name), "password": []byte(strings.Repeat("p", 43)),
				"consumer.group": []byte(ns + "." + name), "topics": []byte("events." + ns),
			},
		}
		if err := s.operatorAPI.Create(ctx, secret); err != nil {
			return fmt.Errorf("creating Secret of %s: %w", name, err)
		}
		before := sub.DeepCopy()
		now := metav1.Now()
		sub.Status = busv1.SubscriptionStatus{
			ObservedGeneration: sub.Generation, Principal: "User:" + ns + "." + name, Username: ns + "." + name,
			SecretName: secret.Name, ConsumerGroup: ns + "." + name, Role: busv1.RoleConsume, Topics: []string{"events." + ns},
			Conditions: []metav1.Condition{
				{Type: busv1.ConditionReady, Status: metav1.ConditionTrue, Reason: busv1.ReasonSucceeded, Message: "credentials and 3 ACLs granted", LastTransitionTime: now, ObservedGeneration: sub.Generation},
				{Type: busv1.ConditionApproved, Status: metav1.ConditionTrue, Reason: busv1.ReasonTicketApproved, Message: "approved by ChangeTicket chg-floor", LastTransitionTime: now, ObservedGeneration: sub.Generation},
			},
		}
		if err := s.operatorAPI.Status().Patch(ctx, sub, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("writing status of Subscription %s: %w", name, err)
		}
		return nil
	}))
	return time.Since(start)
}

func newSubscription(ns, name, topic, ticket string) *busv1.Subscription {
	return &busv1.Subscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       busv1.SubscriptionSpec{Topics: []busv1.TopicReference{{Name: topic}}, ChangeTicket: ticket},
	}
}

// parallel runs fn for 0..n-1 with `writers` in flight and returns the
// first error.
func parallel(n int, fn func(i int) error) error {
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range writers {
		wg.Go(func() {
			for i := range work {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return first
}

func (s *scaleStack) newNamespace(b *testing.B, ctx context.Context, prefix string) string {
	ns, err := s.env.CreateNamespace(ctx, prefix)
	must(b, err)
	return ns
}

// operatorFleet takes n objects of kind through the operator the way a team
// would: for each 100, file a ticket, create its objects, and hand the
// ticket to the reviewer, who approves tickets one at a time as they come
// (an approval pins what exists, so it follows the creates). The clock runs
// from the first ticket filed until the last object is Ready.
func (s *scaleStack) operatorFleet(b *testing.B, ctx context.Context, kind busv1.CoveredKind, n int, fig *fleetFig, res *scaleResults, progress func(string, ...any)) {
	ns := s.newNamespace(b, ctx, "scale-"+strings.ToLower(string(kind)))
	object := func(name, ticket string) client.Object { return newTopic(ns, name, ticket) }
	var list client.ObjectList = &busv1.TopicList{}
	prefix := "t"
	if kind == busv1.KindSubscription {
		// One approved Topic all Subscriptions consume.
		topic := s.readyTopic(b, ctx, ns, "events")
		object = func(name, ticket string) client.Object { return newSubscription(ns, name, topic, ticket) }
		list, prefix = &busv1.SubscriptionList{}, "svc"
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	w, err := s.watchReady(ctx, list, ns)
	must(b, err)
	defer func() { _ = w.stop() }()

	apiBefore, err := s.scrapeAPIServer(ctx)
	must(b, err)
	mgrBefore, err := s.scrapeManager(ctx)
	must(b, err)
	brokerBefore := s.requests.Snapshot()
	queues := s.sampleQueues(ctx)
	var cpu sync.WaitGroup
	if *scaleCPU > 0 {
		cpu.Go(func() {
			file := "cpu-" + strings.ToLower(string(kind)) + ".pprof"
			path, top, err := s.profile(ctx, fmt.Sprintf("profile?seconds=%d", int(scaleCPU.Seconds())), file, "-cum")
			switch {
			case err != nil:
				b.Logf("CPU profile: %v", err)
			case path != "":
				res.Profiles["cpu"+string(kind)] = path
				report(s.dir, "operator CPU profile, first %s of the %s apply (%s):\n%s", *scaleCPU, kind, path, top)
			}
		})
	}

	start := time.Now()
	tickets := make(chan string, n/maxCovers+1)
	var fileMs, approveMs []time.Duration
	var approvals sync.WaitGroup
	var approveErr error
	var lastApproval time.Time
	approvals.Go(func() {
		for t := range tickets {
			at := time.Now()
			_, err := review.Approve(ctx, s.reviewer, client.ObjectKey{Namespace: ns, Name: t}, busv1.Review{Reviewer: reviewer, Time: metav1.Now(), Comment: "benchmark"})
			if err != nil {
				approveErr = cmpErr(approveErr, err)
				continue
			}
			approveMs = append(approveMs, time.Since(at))
			lastApproval = time.Now()
		}
	})
	for i := 0; i < n; i += maxCovers {
		chunk := names[i:min(i+maxCovers, n)]
		ticket := fmt.Sprintf("chg-%05d", i/maxCovers)
		at := time.Now()
		must(b, s.fileTicketAs(ctx, ns, ticket, kind, chunk))
		fileMs = append(fileMs, time.Since(at))
		must(b, parallel(len(chunk), func(j int) error {
			obj := object(chunk[j], ticket)
			if err := s.requester.Create(ctx, obj); err != nil {
				return fmt.Errorf("creating %s %s: %w", kind, chunk[j], err)
			}
			return nil
		}))
		tickets <- ticket
		if (i/maxCovers)%20 == 19 {
			progress("  %d of %d created, %d Ready", i+len(chunk), n, w.readyCount())
		}
	}
	close(tickets)
	created := time.Since(start)
	approvals.Wait()
	must(b, approveErr)
	progress("  all created in %s and approved; waiting for Ready (%d so far)", created.Round(time.Millisecond), w.readyCount())
	last, err := w.waitReady(names, 2*time.Hour)
	must(b, err)
	must(b, s.mgr.running())
	elapsed := last.Sub(start)
	progress("  all %d Ready after %s", n, elapsed.Round(time.Millisecond))

	// Let the last reconciles' requests land before counting.
	s.settle(ctx, 2*time.Second, time.Minute)
	fig.QueueMaxDepth = queues.stop()
	apiAfter, err := s.scrapeAPIServer(ctx)
	must(b, err)
	mgrAfter, err := s.scrapeManager(ctx)
	must(b, err)
	cpu.Wait()

	fig.OperatorSeconds = elapsed.Seconds()
	fig.OperatorPerSecond = float64(n) / elapsed.Seconds()
	fig.Ratio = fig.OperatorSeconds / fig.FloorSeconds
	fig.CreatesSeconds = created.Seconds()
	fig.LastApprovalToReadySec = last.Sub(lastApproval).Seconds()
	fig.TicketFileMsP50 = ms(percentile(fileMs, 50))
	fig.TicketApproveMsP50 = ms(percentile(approveMs, 50))
	fig.TicketApproveMsMax = ms(percentile(approveMs, 100))
	fig.ObjectsReady = n
	per := func(m map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range m {
			out[k] = round3(v / float64(n))
		}
		return out
	}
	reqs := minus(apiAfter.by("apiserver_request_total", nil, "verb", "resource", "subresource"), apiBefore.by("apiserver_request_total", nil, "verb", "resource", "subresource"))
	fig.APIPerObject = per(reqs)
	fig.APIConflicts = minus(apiAfter.by("apiserver_request_total", map[string]string{"code": "409"}, "verb", "resource", "subresource"),
		apiBefore.by("apiserver_request_total", map[string]string{"code": "409"}, "verb", "resource", "subresource"))
	fig.APIMeanMs = meanMs(apiAfter, apiBefore, "apiserver_request_duration_seconds", reqs, "verb", "resource", "subresource")
	fig.OperatorPerObject = per(minus(mgrAfter.by("rest_client_requests_total", nil, "method", "code"), mgrBefore.by("rest_client_requests_total", nil, "method", "code")))
	fig.ReconcilesPerObj = per(minus(mgrAfter.by("controller_runtime_reconcile_total", nil, "controller", "result"), mgrBefore.by("controller_runtime_reconcile_total", nil, "controller", "result")))
	adds := minus(mgrAfter.by("workqueue_adds_total", nil, "name"), mgrBefore.by("workqueue_adds_total", nil, "name"))
	fig.QueueWaitMsMean = meanMs(mgrAfter, mgrBefore, "workqueue_queue_duration_seconds", adds, "name")
	fig.WorkMsMean = meanMs(mgrAfter, mgrBefore, "workqueue_work_duration_seconds", adds, "name")
	broker := s.requests.Snapshot().Minus(brokerBefore)
	fig.BrokerPerObject = map[string]float64{}
	for k, v := range broker {
		fig.BrokerPerObject[kmsg.NameForKey(k)] = round3(float64(v) / float64(n))
	}
}

// meanMs is the mean of a duration histogram's growth, in ms, per group of
// keys that also grew in counts.
func meanMs(after, before scrape, hist string, counts map[string]float64, keys ...string) map[string]float64 {
	sums := minus(after.by(hist+"_sum", nil, keys...), before.by(hist+"_sum", nil, keys...))
	cnts := minus(after.by(hist+"_count", nil, keys...), before.by(hist+"_count", nil, keys...))
	out := map[string]float64{}
	for k, c := range cnts {
		if c > 0 && counts[k] > 0 {
			out[k] = round3(sums[k] / c * 1000)
		}
	}
	return out
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// settle waits until the broker has been quiet for quiet (or limit passed).
func (s *scaleStack) settle(ctx context.Context, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, lastChange := s.requests.Snapshot(), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		if now := s.requests.Snapshot(); len(now.Minus(last)) != 0 {
			last, lastChange = now, time.Now()
			continue
		}
		if time.Since(lastChange) >= quiet {
			return
		}
	}
}

// fileTicketAs files a ChangeTicket as the requester (see fileTicket).
func (s *scaleStack) fileTicketAs(ctx context.Context, ns, name string, kind busv1.CoveredKind, objects []string) error {
	tk := &busv1.ChangeTicket{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: busv1.ChangeTicketSpec{
			Reference: strings.ToUpper(name), Summary: "benchmark " + name, RequestedBy: requester,
			NotAfter: metav1.NewTime(time.Now().Add(6 * time.Hour)),
		},
	}
	for _, o := range objects {
		tk.Spec.Covers = append(tk.Spec.Covers, busv1.CoveredObject{Kind: kind, Name: o})
	}
	if err := s.requester.Create(ctx, tk); err != nil {
		return fmt.Errorf("filing ticket %s/%s: %w", ns, name, err)
	}
	return nil
}

func (s *scaleStack) approve(ctx context.Context, ns, ticket string) error {
	_, err := review.Approve(ctx, s.reviewer, client.ObjectKey{Namespace: ns, Name: ticket}, busv1.Review{Reviewer: reviewer, Time: metav1.Now(), Comment: "benchmark"})
	return err
}

// readyTopic files a ticket, creates the Topic, approves, and waits until
// it is Ready.
func (s *scaleStack) readyTopic(b *testing.B, ctx context.Context, ns, name string) string {
	must(b, s.fileTicketAs(ctx, ns, "chg-"+name, busv1.KindTopic, []string{name}))
	tp := newTopic(ns, name, "chg-"+name)
	must(b, s.requester.Create(ctx, tp))
	must(b, s.approve(ctx, ns, "chg-"+name))
	deadline := time.Now().Add(time.Minute)
	for !isReady(tp) {
		if time.Now().After(deadline) {
			b.Fatalf("Topic %s/%s not Ready after a minute: %q", ns, name, readyReason(tp))
		}
		time.Sleep(20 * time.Millisecond)
		must(b, s.env.Client.Get(ctx, client.ObjectKeyFromObject(tp), tp))
	}
	return name
}

// watchReady follows Topics or Subscriptions in ns and records when each
// became Ready.
func (s *scaleStack) watchReady(ctx context.Context, list client.ObjectList, ns string) (*topicWatch, error) {
	if err := s.env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing %T: %w", list, err)
	}
	rv := list.(metav1.ListInterface).GetResourceVersion()
	tw := &topicWatch{watcher: s.watcher, list: list, ns: ns, rv: rv, readyAt: map[string]time.Time{}, closed: make(chan struct{})}
	tw.ctx, tw.cancel = context.WithCancel(ctx)
	w, err := tw.open()
	if err != nil {
		tw.cancel()
		return nil, err
	}
	go tw.run(w)
	return tw, nil
}

func (tw *topicWatch) readyCount() int {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return len(tw.readyAt)
}

func subscriptionReady(s *busv1.Subscription) bool {
	c := meta.FindStatusCondition(s.Status.Conditions, busv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && s.Status.ObservedGeneration == s.Generation
}

// waitingTicket: 100 Topics wait for one ticket; from the approval (the
// reviewer's write) until all are Ready.
func (s *scaleStack) waitingTicket(b *testing.B, ctx context.Context) *waitingFig {
	const n = 100
	ns := s.newNamespace(b, ctx, "waiting")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("w-%03d", i)
	}
	must(b, s.fileTicketAs(ctx, ns, "chg-wait", busv1.KindTopic, names))
	w, err := s.watchReady(ctx, &busv1.TopicList{}, ns)
	must(b, err)
	defer func() { _ = w.stop() }()
	must(b, parallel(n, func(i int) error { return s.requester.Create(ctx, newTopic(ns, names[i], "chg-wait")) }))
	// Every Topic has been seen and held back before the approval.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var list busv1.TopicList
		must(b, s.env.Client.List(ctx, &list, client.InNamespace(ns)))
		waiting := 0
		for i := range list.Items {
			if r := readyReason(&list.Items[i]); r != "" && !isReady(&list.Items[i]) {
				waiting++
			}
		}
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Topics reported waiting after 2 minutes", waiting, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	must(b, s.approve(ctx, ns, "chg-wait"))
	wrote := time.Since(start)
	last, err := w.waitReady(names, 5*time.Minute)
	must(b, err)
	first := last
	w.mu.Lock()
	for _, at := range w.readyAt {
		if at.Before(first) {
			first = at
		}
	}
	w.mu.Unlock()
	return &waitingFig{Topics: n, ApprovalToAllReadyMs: ms(last.Sub(start)), ApprovalWriteMs: ms(wrote), ApprovalToFirstReadyMs: ms(first.Sub(start))}
}

// ticketSizes files and approves 100 tickets of 1 cover and 100 tickets of
// 100 covers, one at a time, each over 100 existing Topics in its own
// namespace, and counts conflicts on ChangeTickets meanwhile.
func (s *scaleStack) ticketSizes(b *testing.B, ctx context.Context) *ticketFig {
	const tickets, objects = 100, 100
	fig := &ticketFig{FileMsP50: map[string]float64{}, ApproveMsP50: map[string]float64{}, Conflicts: map[string]float64{}, APIMeanMs: map[string]float64{}}
	for _, covers := range []int{1, 100} {
		ns := s.newNamespace(b, ctx, fmt.Sprintf("tickets-%d", covers))
		names := make([]string, objects)
		for i := range names {
			names[i] = fmt.Sprintf("t-%03d", i)
		}
		// The Topics name a ticket that never comes, so the operator only
		// holds them back: the tickets measure the ticket path alone.
		must(b, parallel(objects, func(i int) error { return s.requester.Create(ctx, newTopic(ns, names[i], "chg-none")) }))
		key := fmt.Sprintf("%d covers", covers)
		before, err := s.scrapeAPIServer(ctx)
		must(b, err)
		var file, approve []time.Duration
		for t := range tickets {
			covered := []string{names[t%objects]}
			if covers == 100 {
				covered = names
			}
			ticket := fmt.Sprintf("chg-%03d", t)
			at := time.Now()
			must(b, s.fileTicketAs(ctx, ns, ticket, busv1.KindTopic, covered))
			file = append(file, time.Since(at))
			at = time.Now()
			must(b, s.approve(ctx, ns, ticket))
			approve = append(approve, time.Since(at))
		}
		after, err := s.scrapeAPIServer(ctx)
		must(b, err)
		fig.FileMsP50[key] = ms(percentile(file, 50))
		fig.ApproveMsP50[key] = ms(percentile(approve, 50))
		for k, v := range minus(after.by("apiserver_request_total", map[string]string{"resource": "changetickets", "code": "409"}, "verb", "subresource"),
			before.by("apiserver_request_total", map[string]string{"resource": "changetickets", "code": "409"}, "verb", "subresource")) {
			fig.Conflicts[key+": "+k] = v
		}
		tickets := map[string]string{"resource": "changetickets"}
		counts := minus(after.by("apiserver_request_total", tickets, "verb", "subresource"), before.by("apiserver_request_total", tickets, "verb", "subresource"))
		sums := minus(after.by("apiserver_request_duration_seconds_sum", tickets, "verb", "subresource"), before.by("apiserver_request_duration_seconds_sum", tickets, "verb", "subresource"))
		cnts := minus(after.by("apiserver_request_duration_seconds_count", tickets, "verb", "subresource"), before.by("apiserver_request_duration_seconds_count", tickets, "verb", "subresource"))
		for k, c := range cnts {
			if c > 0 && counts[k] > 0 {
				fig.APIMeanMs[key+": "+strings.TrimSpace(k)] = round3(sums[k] / c * 1000)
			}
		}
		fig.Conflicts[key+": requests"] = minus(after.by("apiserver_request_total", map[string]string{"resource": "changetickets"}, "resource"),
			before.by("apiserver_request_total", map[string]string{"resource": "changetickets"}, "resource"))["changetickets"]
	}
	return fig
}

// kubectlLatencies times `kubectl create` as the requester of a ConfigMap,
// a Topic, and tickets of 1 and 100 covers, on an idle operator: the median
// of 10 each.
func (s *scaleStack) kubectlLatencies(b *testing.B, ctx context.Context) map[string]float64 {
	if _, err := exec.LookPath("kubectl"); err != nil {
		b.Logf("kubectl not found: skipping kubectl latencies")
		return nil
	}
	ns := s.newNamespace(b, ctx, "kubectl")
	// The requester persona may not create ConfigMaps; a Role here lets it.
	must(b, s.allowConfigMaps(ctx, ns))
	covers := func(n int) string {
		var sb strings.Builder
		for i := range n {
			fmt.Fprintf(&sb, "  - {kind: Topic, name: t-%03d}\n", i)
		}
		return sb.String()
	}
	notAfter := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	docs := map[string]func(i int) string{
		"ConfigMap": func(i int) string {
			return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {a: b}\n", i, ns)
		},
		"Topic": func(i int) string {
			return fmt.Sprintf("apiVersion: bus.hms.io/v1\nkind: Topic\nmetadata: {name: k-%d, namespace: %s}\nspec: {partitions: 3, changeTicket: chg-none}\n", i, ns)
		},
		"ChangeTicket, 1 cover": func(i int) string {
			return fmt.Sprintf("apiVersion: bus.hms.io/v1\nkind: ChangeTicket\nmetadata: {name: one-%d, namespace: %s}\nspec:\n  reference: ONE-%d\n  summary: one cover\n  requestedBy: %s\n  notAfter: %q\n  covers:\n%s", i, ns, i, requester, notAfter, covers(1))
		},
		"ChangeTicket, 100 covers": func(i int) string {
			return fmt.Sprintf("apiVersion: bus.hms.io/v1\nkind: ChangeTicket\nmetadata: {name: hundred-%d, namespace: %s}\nspec:\n  reference: HUNDRED-%d\n  summary: a hundred covers\n  requestedBy: %s\n  notAfter: %q\n  covers:\n%s", i, ns, i, requester, notAfter, covers(100))
		},
	}
	out := map[string]float64{}
	for what, doc := range docs {
		var ds []time.Duration
		for i := range 10 {
			cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.requesterKubeconfig, "create", "-f", "-")
			cmd.Stdin = strings.NewReader(doc(i))
			at := time.Now()
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("kubectl create %s: %v: %s", what, err, o)
			}
			ds = append(ds, time.Since(at))
		}
		out[what] = ms(percentile(ds, 50))
	}
	return out
}

// idle counts, over a quiet window, every API write (all clients; the
// benchmark writes nothing then), broker requests and reconciles.
func (s *scaleStack) idle(b *testing.B, ctx context.Context, window time.Duration) *idleFig {
	// Let the tail of earlier work land; resyncs never let the broker go
	// quiet for long, and they belong in the window.
	s.settle(ctx, 2*time.Second, 20*time.Second)
	apiBefore, err := s.scrapeAPIServer(ctx)
	must(b, err)
	mgrBefore, err := s.scrapeManager(ctx)
	must(b, err)
	brokerBefore := s.requests.Snapshot()
	time.Sleep(window)
	apiAfter, err := s.scrapeAPIServer(ctx)
	must(b, err)
	mgrAfter, err := s.scrapeManager(ctx)
	must(b, err)
	broker := s.requests.Snapshot().Minus(brokerBefore)
	writes := map[string]float64{}
	for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE", "APPLY"} {
		for k, v := range minus(apiAfter.by("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource", "subresource"),
			apiBefore.by("apiserver_request_total", map[string]string{"verb": verb}, "verb", "resource", "subresource")) {
			writes[k] = v
		}
	}
	// The benchmark's own /metrics reads and SubjectAccessReviews are none
	// of these; the API server's own lease renewals are (PUT leases).
	return &idleFig{
		Seconds: window.Seconds(), APIWrites: writes,
		BrokerWrites: broker.Writes(), BrokerReads: broker.Reads(),
		Reconciles: minus(mgrAfter.by("controller_runtime_reconcile_total", nil, "controller"), mgrBefore.by("controller_runtime_reconcile_total", nil, "controller")),
	}
}

// allowConfigMaps lets the requester create ConfigMaps in ns.
func (s *scaleStack) allowConfigMaps(ctx context.Context, ns string) error {
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "configmaps"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: requester}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := s.env.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T: %w", obj, err)
		}
	}
	// The authorizer reads bindings from an informer: give it a moment.
	time.Sleep(time.Second)
	return nil
}

// report prints to stderr (benchmark logs are cut at a few lines) and
// appends to report.txt in dir.
func report(dir, format string, args ...any) {
	text := fmt.Sprintf(format, args...) + "\n"
	fmt.Fprint(os.Stderr, text)
	if f, err := os.OpenFile(filepath.Join(dir, "report.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		_, _ = f.WriteString(text)
		_ = f.Close()
	}
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}
