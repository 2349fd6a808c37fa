package bench

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"

	"netpolbench/results"
)

// ErrResumeMismatch is returned (wrapped) by Resume when the run cannot be continued by this
// binary with this sweep: the message says what differs.
var ErrResumeMismatch = errors.New("cannot resume")

// ThisBinary identifies the running executable: its Go build ID (read from the ELF note the Go
// linker writes) and, when the build stamped them, its VCS revision and modified flag.
func ThisBinary() results.Binary {
	var b results.Binary
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		b.BuildID, _ = goBuildID(exe)
	}
	return b
}

// goBuildID reads the Go build ID from an executable's .note.go.buildid section: a note of
// type 4 named "Go" whose descriptor is the ID.
func goBuildID(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := f.Section(".note.go.buildid")
	if s == nil {
		return "", errors.New("no .note.go.buildid section")
	}
	d, err := s.Data()
	if err != nil {
		return "", err
	}
	if len(d) < 16 {
		return "", errors.New("short build id note")
	}
	nameSize, descSize := binary.LittleEndian.Uint32(d[0:]), binary.LittleEndian.Uint32(d[4:])
	name := (nameSize + 3) &^ 3
	if uint32(len(d)) < 12+name+descSize || !bytes.HasPrefix(d[12:], []byte("Go\x00")) {
		return "", errors.New("malformed build id note")
	}
	return string(d[12+name : 12+name+descSize]), nil
}

// sameBinary reports whether two identities name the same build; an identity that carries
// neither a build ID nor a revision matches nothing.
func sameBinary(a, b results.Binary) bool {
	if a.BuildID != "" && b.BuildID != "" {
		return a.BuildID == b.BuildID
	}
	if a.Revision != "" && b.Revision != "" {
		return a.Revision == b.Revision && !a.Modified && !b.Modified
	}
	return false
}

// resumeKey is what a resumed run must match besides the binary: the sweep (seed included),
// whether real packets are sent, and the source of a fixed cluster (a dump whose content must
// be the same).
type resumeKey struct {
	Spec    Spec   `json:"spec"`
	Packets bool   `json:"packets"`
	Source  string `json:"source,omitempty"`
}

// keyedSource is a Source whose scales depend on more than the spec, e.g. a file's content.
type keyedSource interface {
	// ResumeKey identifies that content.
	ResumeKey() (string, error)
}

// ResumeKey is the dump's path and the SHA-256 of its content.
func (s *ClusterFileSource) ResumeKey() (string, error) {
	b, err := os.ReadFile(s.Path)
	if err != nil {
		return "", fmt.Errorf("read cluster %s: %w", s.Path, err)
	}
	sum := sha256.Sum256(b)
	return s.Path + " sha256:" + hex.EncodeToString(sum[:]), nil
}

func (r *Runner) resumeKey() (json.RawMessage, error) {
	k := resumeKey{Spec: r.Spec, Packets: r.Kernel}
	if ks, ok := r.Source.(keyedSource); ok {
		v, err := ks.ResumeKey()
		if err != nil {
			return nil, err
		}
		k.Source = v
	}
	return json.Marshal(k)
}

// RecordedSpec returns the sweep a partial run was started with, so `bench --resume` needs no
// flags besides the directory.
func RecordedSpec(run *results.Run) (Spec, error) {
	if run.Progress == nil {
		return Spec{}, fmt.Errorf("%w: the run records no progress (it predates resumable runs)", ErrResumeMismatch)
	}
	var k resumeKey
	if err := json.Unmarshal(run.Progress.Resume, &k); err != nil {
		return Spec{}, fmt.Errorf("%w: read the run's sweep: %v", ErrResumeMismatch, err)
	}
	return k.Spec, nil
}

// Resume makes Run continue the partial run in dir (results.json there): it checks that this
// binary wrote it and that the runner's sweep, packets setting and source are the ones it was
// started with, and returns an error wrapping ErrResumeMismatch naming what differs otherwise.
// Run then skips every phase the run finished and writes into dir.
func (r *Runner) Resume(dir string) error {
	run, err := results.Load(dir + "/" + ResultsFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrResumeMismatch, err)
	}
	if run.Progress == nil {
		return fmt.Errorf("%w %s: the run records no progress (it predates resumable runs)", ErrResumeMismatch, dir)
	}
	if run.Complete {
		return fmt.Errorf("%w %s: the run is complete", ErrResumeMismatch, dir)
	}
	if me := ThisBinary(); !sameBinary(me, run.Progress.Binary) {
		return fmt.Errorf("%w %s: it was written by %s, this is %s (resume with the binary that started it, or start a new run)",
			ErrResumeMismatch, dir, run.Progress.Binary, me)
	}
	want, err := r.resumeKey()
	if err != nil {
		return err
	}
	if diff := keyDiff(run.Progress.Resume, want); diff != "" {
		return fmt.Errorf("%w %s: %s (drop the flags to continue the run as it was started)", ErrResumeMismatch, dir, diff)
	}
	if err := results.RemoveStaleTemps(dir); err != nil {
		return err
	}
	if err := r.restore(run); err != nil {
		return fmt.Errorf("%w %s: %w", ErrResumeMismatch, dir, err)
	}
	run.Progress.Stopped = nil
	r.Dir = dir
	return nil
}

// keyDiff names the fields in which two resume keys differ, "" when they are equal. Keys are
// compared as compact JSON: results.json stores them indented.
func keyDiff(had, want json.RawMessage) string {
	compact := func(b []byte) string {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return string(b)
		}
		return buf.String()
	}
	if compact(had) == compact(want) {
		return ""
	}
	flat := func(b json.RawMessage) map[string]string {
		var k struct {
			Spec    map[string]json.RawMessage `json:"spec"`
			Packets bool                       `json:"packets"`
			Source  string                     `json:"source"`
		}
		out := map[string]string{}
		if err := json.Unmarshal(b, &k); err != nil {
			return out
		}
		for f, v := range k.Spec {
			out[f] = compact(v)
		}
		out["packets"] = fmt.Sprint(k.Packets)
		out["source"] = k.Source
		return out
	}
	a, b := flat(had), flat(want)
	var fields []string
	for f := range a {
		fields = append(fields, f)
	}
	for f := range b {
		if _, ok := a[f]; !ok {
			fields = append(fields, f)
		}
	}
	sort.Strings(fields)
	var diffs []string
	for _, f := range slices.Compact(fields) {
		if a[f] != b[f] {
			diffs = append(diffs, fmt.Sprintf("%s is %s, the run's is %s", f, orNone(b[f]), orNone(a[f])))
		}
	}
	if len(diffs) == 0 {
		return "the sweep differs"
	}
	return strings.Join(diffs, "; ")
}

func orNone(s string) string {
	if s == "" || s == `""` || s == "null" {
		return "none"
	}
	return s
}

// savedState is the runner's bookkeeping, kept in results.json (Progress.State) so a resumed
// run can fit and judge over every scale, the ones measured before it stopped included.
type savedState struct {
	Sizes  map[string][]savedPoint `json:"sizes,omitempty"`
	Pkt    map[string][]savedPoint `json:"pkt,omitempty"`
	PodAdd map[string]savedPodAdd  `json:"pod_add,omitempty"`
	// Out are the backend units ("pods=100/backend=ipset") that were capped before they
	// synced: nothing more is measured for them.
	Out []string `json:"out,omitempty"`
}

type savedPoint struct {
	Pods       int          `json:"pods"`
	Identities int          `json:"identities,omitempty"`
	LabelSets  int          `json:"label_sets,omitempty"`
	Size       results.Size `json:"size"`
	SyncNS     float64      `json:"sync_ns,omitempty"`
	PodAddNS   float64      `json:"pod_add_ns,omitempty"`
}

type savedPodAdd struct {
	Events              int    `json:"events"`
	EntriesChanged      int    `json:"entries_changed"`
	PolicyEntriesBefore uint64 `json:"policy_entries_before"`
	PolicyEntriesAfter  uint64 `json:"policy_entries_after"`
	Measured            bool   `json:"measured"`
}

func savePoints(m map[string][]sizePoint) map[string][]savedPoint {
	out := map[string][]savedPoint{}
	for k, pts := range m {
		for _, p := range pts {
			out[k] = append(out[k], savedPoint{Pods: p.pods, Identities: p.identities, LabelSets: p.labelSets, Size: p.size, SyncNS: p.syncNS, PodAddNS: p.podAddNS})
		}
	}
	return out
}

func loadPoints(m map[string][]savedPoint) map[string][]sizePoint {
	out := map[string][]sizePoint{}
	for k, pts := range m {
		for _, p := range pts {
			out[k] = append(out[k], sizePoint{pods: p.Pods, identities: p.Identities, labelSets: p.LabelSets, size: p.Size, syncNS: p.SyncNS, podAddNS: p.PodAddNS})
		}
	}
	return out
}

func (r *Runner) saveState() (json.RawMessage, error) {
	s := savedState{Sizes: savePoints(r.sizes), Pkt: savePoints(r.pkt), PodAdd: map[string]savedPodAdd{}}
	for k, c := range r.podAdd {
		s.PodAdd[k] = savedPodAdd{Events: c.events, EntriesChanged: c.entriesChanged, PolicyEntriesBefore: c.policyEntriesBefore,
			PolicyEntriesAfter: c.policyEntriesAfter, Measured: c.measured}
	}
	for u := range r.out {
		s.Out = append(s.Out, u)
	}
	sort.Strings(s.Out)
	return json.Marshal(s)
}

// restore makes run the runner's run as it stands: its figures, its latency summaries (kept
// as they are: their phases are finished) and the bookkeeping the fits and claims need.
func (r *Runner) restore(run *results.Run) error {
	var s savedState
	if len(run.Progress.State) > 0 {
		if err := json.Unmarshal(run.Progress.State, &s); err != nil {
			return fmt.Errorf("read the run's state: %w", err)
		}
	}
	r.run = run
	r.restored = run.Latency
	r.hists = NewHistograms()
	r.sizes, r.pkt = loadPoints(s.Sizes), loadPoints(s.Pkt)
	r.podAdd = map[string]*podAddCheck{}
	for k, c := range s.PodAdd {
		r.podAdd[k] = &podAddCheck{events: c.Events, entriesChanged: c.EntriesChanged, policyEntriesBefore: c.PolicyEntriesBefore,
			policyEntriesAfter: c.PolicyEntriesAfter, measured: c.Measured}
	}
	r.out = map[string]bool{}
	for _, u := range s.Out {
		r.out[u] = true
	}
	r.prior = run.Duration
	return nil
}
