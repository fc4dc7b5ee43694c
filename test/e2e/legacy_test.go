package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
)

// legacyClient plays omni-manager: its base URL carries the credentials (Go's client turns
// them into Basic auth on every request), and it checks every answer for what omni-manager
// cannot take: a state outside the five, a time string shorter than 19 characters.
type legacyClient struct {
	base string
}

func newLegacyClient(t *testing.T, user, password string) legacyClient {
	t.Helper()
	u, err := url.Parse(omni.URL + "/legacy")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return legacyClient{base: u.String()}
}

type legacyResponse struct {
	code   int
	header http.Header
	body   []byte
}

// do sends body as it is, with a Content-Type only when contentType is not empty
// (omni-manager's batchQuery has none).
func (c legacyClient) do(t *testing.T, method, path, contentType string, body []byte) legacyResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := legacyResponse{resp.StatusCode, resp.Header, b}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		legacyCheckShape(t, method+" "+path, b)
	}
	return r
}

// legacyCheckShape fails on any state value outside the legacy ones and any time string
// shorter than 19 characters, anywhere in a JSON answer.
func legacyCheckShape(t *testing.T, what string, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("%s: answer is not JSON: %v: %s", what, err, b)
		return
	}
	var walk func(v any, inSteps bool)
	walk = func(v any, inSteps bool) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e, inSteps)
			}
		case map[string]any:
			for k, e := range x {
				switch k {
				case "state":
					s, _ := e.(string)
					if inSteps && !slices.Contains(legacy.StepStates, legacy.StepState(s)) {
						t.Errorf("%s: step state %v is not one of %v", what, e, legacy.StepStates)
					}
					if !inSteps && !slices.Contains(legacy.States, legacy.State(s)) {
						t.Errorf("%s: job state %v is not one of %v", what, e, legacy.States)
					}
				case "startTime", "endTime":
					s, ok := e.(string)
					if !ok || len(s) < 19 {
						t.Errorf("%s: %s = %#v: want a time string of at least 19 characters", what, k, e)
					} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
						t.Errorf("%s: %s = %q: not RFC 3339", what, k, s)
					}
				case "steps":
					walk(e, true)
					continue
				}
				if k != "spec" {
					walk(e, inSteps)
				}
			}
		}
	}
	walk(v, false)
}

func (r legacyResponse) job(t *testing.T) legacy.Job {
	t.Helper()
	var j legacy.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("decode legacy job: %v: %s", err, r.body)
	}
	return j
}

func (r legacyResponse) wantError(t *testing.T, what string, code int, msg string) {
	t.Helper()
	var e map[string]string
	if r.code != code || json.Unmarshal(r.body, &e) != nil || !strings.Contains(e["error"], msg) {
		t.Errorf("%s: %d %s, want %d {\"error\": …%s…}", what, r.code, r.body, code, msg)
	}
}

// identity is the query string naming one job, as omni-manager builds it.
func legacyIdentity(task, domain, id string) string {
	return "service=team-a&task=" + task + "&domain=" + domain + "&ID=" + id
}

func (c legacyClient) get(t *testing.T, task, domain, id string) legacy.Job {
	t.Helper()
	r := c.do(t, http.MethodGet, "/v1/jobs?"+legacyIdentity(task, domain, id), "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("legacy get %s: %d %s", id, r.code, r.body)
	}
	return r.job(t)
}

// waitState polls the legacy get until done holds.
func (c legacyClient) waitState(t *testing.T, task, domain, id, what string, done func(legacy.Job) bool) legacy.Job {
	t.Helper()
	var last legacy.Job
	laEventually(t, 2*time.Minute, "legacy job "+id+" "+what, func() (bool, error) {
		last = c.get(t, task, domain, id)
		return done(last), fmt.Errorf("state %s, steps %+v", last.State, last.Steps)
	})
	return last
}

// readLog reads one step's log as omni-manager does: pages of maxRecord=999999999 from the
// position of the last answer, until logCompleted: true; 404 "job log not found" means
// nothing yet.
func (c legacyClient) readLog(t *testing.T, task, domain, id string, step int) (log []byte, pages int) {
	t.Helper()
	var got []byte
	pos := ""
	laEventually(t, 2*time.Minute, fmt.Sprintf("log of step %d of %s completed", step, id), func() (bool, error) {
		r := c.do(t, http.MethodGet, fmt.Sprintf("/v1/jobs/logs?%s&stepID=%d&startTimeUUID=%s&maxRecord=999999999",
			legacyIdentity(task, domain, id), step, url.QueryEscape(pos)), "", nil)
		switch r.code {
		case http.StatusNotFound:
			r.wantError(t, "log not yet there", http.StatusNotFound, "job log not found")
			return false, fmt.Errorf("404 %s", r.body)
		case http.StatusOK:
		default:
			t.Fatalf("legacy logs: %d %s", r.code, r.body)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("legacy logs: Content-Type %q, want text/plain", ct)
		}
		got = append(got, r.body...)
		pages++
		if p := r.header.Get(legacy.HeaderLogPosition); p != "" {
			pos = p
		}
		done := r.header.Get(legacy.HeaderLogCompleted)
		if done != "true" && done != "false" {
			t.Fatalf("legacy logs: logCompleted %q", done)
		}
		return done == "true", fmt.Errorf("%d bytes so far", len(got))
	})
	return got, pages
}

// download is the new API's download of a step's archived log (409 until it is archived).
func legacyDownload(t *testing.T, id, step string) []byte {
	t.Helper()
	var body []byte
	laEventually(t, 2*time.Minute, "download of "+id+"/"+step, func() (bool, error) {
		r := alice.do(t, http.MethodGet, "/v1/jobs/"+id+"/logs/"+step+":download", nil)
		body = r.body
		return r.code == http.StatusOK, fmt.Errorf("%d %s", r.code, r.body)
	})
	return body
}

const legacyDomain = "e2e-legacy"

// The exact bodies omni-manager sends (docs/compat.md).
const (
	legacyReleaseBody = `{"service":"team-a","task":"buildimagefromrelease","domain":"e2e-legacy","userID":"1001","spec":{"version":"openEuler-22.03-LTS","packages":["bash","kernel","vim","bash"],"format":"installer-iso","architecture":"x86_64"},"engine":"kubernetes"}`
	legacyISOBody     = `{"service":"team-a","task":"buildimagefromiso","domain":"e2e-legacy","userID":"1002","spec":{"kickStart":{"content":"lang en_US.UTF-8\nkeyboard us\n%packages\n@core\n%end\n","name":"ks.cfg"},"image":{"url":"https://repo.openeuler.org/openEuler-24.03-LTS/ISO/aarch64/openEuler-24.03-LTS-aarch64-dvd.iso","checksum":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","name":"openEuler-24.03-LTS-aarch64-dvd.iso","architecture":"aarch64"}},"engine":"kubernetes"}`
)

// omni-manager, unchanged but for its base URL: it creates a release ISO job and an
// ISO+kickstart job, polls batchQuery until both succeed, reads each, and reads every step's
// log to its end — byte for byte the new API's download.
func TestLegacyOmniManager(t *testing.T) {
	c := newLegacyClient(t, "alice", "alice-pw")
	// The release job's steps each log more lines than one legacy page holds (maxRecord is
	// clamped to legacy.MaxRecord), so reading them takes several pages and positions.
	lf := lqUseLogFile(t, "x86_64")
	lf.add(t, legacy.MaxRecord+2345, "legacy")
	if r := c.do(t, http.MethodGet, "/v1/health", "", nil); r.code != 200 || !bytes.Contains(r.body, []byte(`"Status":"up"`)) {
		t.Errorf("health: %d %s", r.code, r.body)
	}
	type created struct {
		task, id, userID string
		arch, cluster    string
		steps            []string
	}
	var jobsMade []created
	for _, c2 := range []struct{ path, task, body, userID, arch string }{
		{"/v1/jobs/", "buildimagefromrelease", legacyReleaseBody, "1001", "x86_64"},
		{"/v1/jobs", "buildimagefromiso", legacyISOBody, "1002", "aarch64"},
	} {
		r := c.do(t, http.MethodPost, c2.path, "application/json", []byte(c2.body))
		if r.code != http.StatusCreated {
			t.Fatalf("legacy create %s: %d %s", c2.task, r.code, r.body)
		}
		j := r.job(t)
		var sent map[string]any
		_ = json.Unmarshal([]byte(c2.body), &sent)
		if j.Service != "team-a" || j.Task != c2.task || j.Domain != legacyDomain || j.UserID != c2.userID ||
			j.Engine != "kubernetes" || j.ID == "" || len(j.Steps) == 0 || fmt.Sprint(j.Spec) != fmt.Sprint(sent["spec"]) {
			t.Errorf("legacy create %s answered %s", c2.task, r.body)
		}
		if j.State == legacy.JobFailed || j.State == legacy.JobStopped {
			t.Errorf("legacy create %s: state %s", c2.task, j.State)
		}
		// The same job through /v1: the arch picked by the spec, userID kept for the upload step.
		v1 := alice.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t)
		if v1.Arch != c2.arch || v1.Parameters["userID"] != c2.userID {
			t.Errorf("%s as /v1 sees it: arch %s, parameters %v", c2.task, v1.Arch, v1.Parameters)
		}
		var names []string
		for _, s := range j.Steps {
			names = append(names, s.Name)
		}
		jobsMade = append(jobsMade, created{c2.task, j.ID, c2.userID, c2.arch, v1.Cluster, names})
	}
	rel := jobsMade[0]
	if got := alice.do(t, http.MethodGet, "/v1/jobs/"+rel.id, nil).job(t).Parameters; got["version"] != "22.03-LTS" ||
		fmt.Sprint(got["packages"]) != "[bash kernel vim]" || got["format"] != "calamares-iso" || len(got["repos"].([]any)) != 3 {
		t.Errorf("release job parameters: %v", got)
	}

	// Poll batchQuery, as omni-manager does, without a Content-Type, with both ids and one of
	// the predecessor's (a UUID, left out), until both succeeded.
	batch := []byte(fmt.Sprintf(`{"service":"team-a","task":"%s","domain":"e2e-legacy","IDs":["%s","0b8f1c9e-4a52-4f3a-9b1e-2c3d4e5f6a7b"]}`, rel.task, rel.id))
	batchISO := []byte(fmt.Sprintf(`{"service":"team-a","task":"%s","domain":"e2e-legacy","IDs":["%s"]}`, jobsMade[1].task, jobsMade[1].id))
	for i, body := range [][]byte{batch, batchISO} {
		path := []string{"/v1/jobs/batchQuery", "/v1/jobs/batchQuery/"}[i]
		laEventually(t, 2*time.Minute, "batchQuery showing JobSucceed", func() (bool, error) {
			r := c.do(t, http.MethodPost, path, "", body)
			var got []legacy.Job
			if r.code != http.StatusOK || json.Unmarshal(r.body, &got) != nil {
				t.Fatalf("batchQuery: %d %s", r.code, r.body)
			}
			if len(got) != 1 {
				t.Fatalf("batchQuery: %d jobs, want 1: %s", len(got), r.body)
			}
			return got[0].State == legacy.JobSucceed, fmt.Errorf("state %s", got[0].State)
		})
	}

	for _, m := range jobsMade {
		// Get, with and without the trailing slash.
		for _, path := range []string{"/v1/jobs?", "/v1/jobs/?"} {
			r := c.do(t, http.MethodGet, path+legacyIdentity(m.task, legacyDomain, m.id), "", nil)
			if r.code != http.StatusOK {
				t.Fatalf("legacy get: %d %s", r.code, r.body)
			}
			j := r.job(t)
			if j.State != legacy.JobSucceed || j.UserID != m.userID || j.EndTime == legacy.ZeroTime || j.Version < 1 {
				t.Errorf("legacy get %s: %s", m.id, r.body)
			}
			for i, s := range j.Steps {
				if s.ID != i+1 || s.Name != m.steps[i] || s.State != legacy.StepSucceed || s.StartTime == legacy.ZeroTime {
					t.Errorf("legacy get %s: step %d %+v", m.id, i, s)
				}
			}
		}
		// The upload step got the user, as the predecessor's did.
		kj := k8sJobs(t, m.cluster, m.id)
		if len(kj) != 1 {
			t.Fatalf("%d Kubernetes Jobs of %s", len(kj), m.id)
		}
		env := map[string]string{}
		for _, e := range kj[0].Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["OMNI_USER_ID"] != m.userID || env["OMNI_JOB_ID"] != m.id {
			t.Errorf("upload step of %s: env %v, want OMNI_USER_ID=%s and OMNI_JOB_ID (externalID) = the job id", m.id, env, m.userID)
		}
		// Every step's log, paged to its end, equals the new API's download.
		for i, step := range m.steps {
			got, pages := c.readLog(t, m.task, legacyDomain, m.id, i+1)
			if m.arch == "x86_64" && pages < 2 {
				t.Errorf("%s/%s: read in %d page(s), want several", m.id, step, pages)
			}
			want := legacyDownload(t, m.id, step)
			if len(want) == 0 {
				t.Errorf("%s/%s: the download is empty: nothing compared", m.id, step)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s: legacy log (%d bytes) differs from the download (%d bytes)", m.id, step, len(got), len(want))
			}
		}
	}
}

// omni-manager stops a running job: JobStopped, the steps that had not finished StepStopped; a
// second stop of the finished job is the predecessor's 500. A job whose step fails ends
// JobFailed with that step StepFailed.
func TestLegacyStopAndFail(t *testing.T) {
	c := newLegacyClient(t, "alice", "alice-pw")
	// labels is an extension omni-manager does not send; the test uses it to hold or fail a step
	// in the simulated cluster, as the /v1 tests do.
	create := func(labels map[string]string) string {
		var req map[string]any
		_ = json.Unmarshal([]byte(legacyReleaseBody), &req)
		req["labels"] = labels
		b, _ := json.Marshal(req)
		r := c.do(t, http.MethodPost, "/v1/jobs", "application/json", b)
		if r.code != http.StatusCreated {
			t.Fatalf("legacy create: %d %s", r.code, r.body)
		}
		return r.job(t).ID
	}
	const task = "buildimagefromrelease"

	held := create(map[string]string{platform.AnnotationHoldStep: "build-image"})
	c.waitState(t, task, legacyDomain, held, "running build-image", func(j legacy.Job) bool {
		return j.State == legacy.JobRunning && len(j.Steps) == 3 && j.Steps[1].State == legacy.StepRunning
	})
	r := c.do(t, http.MethodDelete, "/v1/jobs?"+legacyIdentity(task, legacyDomain, held), "", nil)
	if r.code != http.StatusOK || string(r.body) != `""` {
		t.Fatalf("legacy stop: %d %s, want 200 \"\"", r.code, r.body)
	}
	j := c.get(t, task, legacyDomain, held)
	want := []legacy.StepState{legacy.StepSucceed, legacy.StepStopped, legacy.StepStopped}
	if j.State != legacy.JobStopped || j.EndTime == legacy.ZeroTime {
		t.Errorf("after stop: state %s end %s, want JobStopped with an end", j.State, j.EndTime)
	}
	for i, s := range j.Steps {
		if s.State != want[i] {
			t.Errorf("after stop: step %s %s, want %s", s.Name, s.State, want[i])
		}
	}
	r = c.do(t, http.MethodDelete, "/v1/jobs/?"+legacyIdentity(task, legacyDomain, held), "", nil)
	r.wantError(t, "second stop", http.StatusInternalServerError, "unable to delete job default/"+held+", it's already finished")
	// The pods go once their logs are archived (the job's objects were deleted by the stop).
	laEventually(t, 2*time.Minute, "pods of the stopped job gone", func() (bool, error) {
		pods, err := omni.Platform.Cluster("x86_64").Clientset().CoreV1().Pods("default").List(context.Background(),
			metav1.ListOptions{LabelSelector: jobIDLabel + "=" + held})
		return err == nil && len(pods.Items) == 0, err
	})

	failing := create(map[string]string{platform.AnnotationFailStep: "build-image", platform.AnnotationExitCode: "3"})
	j = c.waitState(t, task, legacyDomain, failing, "failed", func(j legacy.Job) bool {
		return j.State == legacy.JobFailed && len(j.Steps) == 3 && j.Steps[1].State == legacy.StepFailed
	})
	if j.Steps[0].State != legacy.StepSucceed || j.Steps[2].State != legacy.StepCreated || !strings.Contains(j.Detail, "build-image") {
		t.Errorf("failed job: %+v", j)
	}
	r = c.do(t, http.MethodDelete, "/v1/jobs?"+legacyIdentity(task, legacyDomain, failing), "", nil)
	r.wantError(t, "stop of a failed job", http.StatusInternalServerError, "it's already finished")
	// Log positions are the layer's own: a forged one is refused naming it; a step beyond the
	// last is refused.
	logs := "/v1/jobs/logs?" + legacyIdentity(task, legacyDomain, failing)
	c.do(t, http.MethodGet, logs+"&stepID=1&startTimeUUID=forged", "", nil).
		wantError(t, "forged position", http.StatusBadRequest, "startTimeUUID")
	c.do(t, http.MethodGet, logs+"&stepID=4", "", nil).wantError(t, "step 4 of 3", http.StatusBadRequest, "stepID")
	c.do(t, http.MethodGet, logs, "", nil).wantError(t, "no stepID", http.StatusBadRequest, "stepID")
}

// The predecessor's error answers.
func TestLegacyErrors(t *testing.T) {
	c := newLegacyClient(t, "alice", "alice-pw")
	const task = "buildimagefromrelease"
	c.do(t, http.MethodGet, "/v1/jobs?"+legacyIdentity(task, legacyDomain, "01m8f9d6ecg576fhj04x11ggjg"), "", nil).
		wantError(t, "unknown id", http.StatusInternalServerError, "job not found")
	c.do(t, http.MethodGet, "/v1/jobs/?"+legacyIdentity(task, legacyDomain, "0b8f1c9e-4a52-4f3a-9b1e-2c3d4e5f6a7b"), "", nil).
		wantError(t, "predecessor's id", http.StatusInternalServerError, "job not found")
	c.do(t, http.MethodDelete, "/v1/jobs?"+legacyIdentity(task, legacyDomain, "01m8f9d6ecg576fhj04x11ggjg"), "", nil).
		wantError(t, "stop of an unknown id", http.StatusInternalServerError, "job not found")
	c.do(t, http.MethodGet, "/v1/jobs/logs?"+legacyIdentity(task, legacyDomain, "01m8f9d6ecg576fhj04x11ggjg")+"&stepID=1", "", nil).
		wantError(t, "logs of an unknown id", http.StatusInternalServerError, "job not found")
	c.do(t, http.MethodGet, "/v1/jobs?service=team-a&task="+task+"&domain="+legacyDomain, "", nil).
		wantError(t, "get without ID", http.StatusBadRequest, "ID")
	c.do(t, http.MethodPost, "/v1/jobs/batchQuery", "", []byte(`{"service":"team-a","task":"x","domain":"d"}`)).
		wantError(t, "batchQuery without IDs", http.StatusBadRequest, "IDs")
	for name, body := range map[string]string{
		"userID":  strings.Replace(legacyReleaseBody, `"userID":"1001",`, "", 1),
		"domain":  strings.Replace(legacyReleaseBody, `"domain":"e2e-legacy",`, "", 1),
		"spec":    `{"service":"team-a","task":"buildimagefromrelease","domain":"e2e-legacy","userID":"1","engine":"kubernetes"}`,
		"version": strings.Replace(legacyReleaseBody, `"version":"openEuler-22.03-LTS",`, "", 1),
	} {
		c.do(t, http.MethodPost, "/v1/jobs", "application/json", []byte(body)).
			wantError(t, "create without "+name, http.StatusBadRequest, name)
	}
	c.do(t, http.MethodPost, "/v1/jobs", "application/json", []byte(strings.Replace(legacyReleaseBody, "openEuler-22.03-LTS", "openEuler-9.99-LTS", 1))).
		wantError(t, "unknown version", http.StatusBadRequest, `"openEuler-9.99-LTS"`)
	c.do(t, http.MethodPost, "/v1/jobs", "application/json", []byte(strings.Replace(legacyReleaseBody, `"engine":"kubernetes"`, `"engine":"cadence"`, 1))).
		wantError(t, "another engine", http.StatusBadRequest, "unrecognized job kind")
	// The same users and roles as /v1: a viewer may not create, another service's user sees no job.
	newLegacyClient(t, "bob", "bob-pw").do(t, http.MethodPost, "/v1/jobs", "application/json", []byte(legacyReleaseBody)).
		wantError(t, "a viewer of another service creates", http.StatusForbidden, "")
	newLegacyClient(t, "alice", "wrong").do(t, http.MethodGet, "/v1/jobs?"+legacyIdentity(task, legacyDomain, "01m8f9d6ecg576fhj04x11ggjg"), "", nil).
		wantError(t, "wrong password", http.StatusUnauthorized, "")
}

// The OpenAPI document shows the legacy routes under their own tag, and only them.
func TestLegacyOpenAPITag(t *testing.T) {
	var doc struct {
		Tags []struct {
			Name string `json:"name"`
		} `json:"tags"`
		Paths map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	r := anon.do(t, http.MethodGet, "/openapi.json", nil)
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(doc.Tags, func(tag struct {
		Name string `json:"name"`
	}) bool {
		return tag.Name == "legacy"
	}) {
		t.Errorf("no tag legacy among %v", doc.Tags)
	}
	n := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			isLegacy := strings.HasPrefix(path, "/legacy/")
			if isLegacy {
				n++
			}
			if got := slices.Contains(op.Tags, "legacy"); got != isLegacy {
				t.Errorf("%s %s: tags %v", method, path, op.Tags)
			}
		}
	}
	if n != 6 {
		t.Errorf("%d legacy operations documented, want 6 (create, get, stop, batchQuery, logs, health)", n)
	}
}
