package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// The web console (/ui/) in a real headless Chromium (Debian's chromium; `make test` installs it
// with hack/chromium.sh), signed in as the tests' users with their basic-auth credentials.

// browser is one headless Chromium signed in as one user.
type browser struct {
	t    *testing.T
	ctx  context.Context
	user string
}

// artefactDir is where the console tests write their screenshots: $OMNI_ARTIFACTS, or one new
// folder per test run that is kept (the screenshots' paths are logged).
var artefactDir = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("OMNI_ARTIFACTS"); dir != "" {
		return dir, os.MkdirAll(dir, 0o755)
	}
	return os.MkdirTemp("", "omni-console-")
})

// artefacts returns artefactDir, failing the test if it cannot be made.
func artefacts(t *testing.T) string {
	t.Helper()
	dir, err := artefactDir()
	if err != nil {
		t.Fatalf("artefact folder: %v", err)
	}
	return dir
}

// newBrowser starts a headless Chromium whose every request carries c's credentials, as a
// browser does once its user has answered the basic-auth prompt.
func newBrowser(t *testing.T, c client) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no `chromium` on PATH: the console tests need Debian's chromium package (hack/chromium.sh installs it; make test runs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, user: c.user}

	// The first action starts the browser, whose life is its context's: it must not carry a
	// timeout, so the deadline is kept here.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.password))
	started := make(chan error, 1)
	go func() {
		started <- chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}})
			return err
		}))
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium (%s) for %s: %v", path, c.user, err)
		}
	case <-time.After(time.Minute):
		cancel()
		t.Fatalf("chromium (%s) for %s: not started within a minute", path, c.user)
	}
	return b
}

// do runs actions, failing the test if they do not finish within d.
func (b *browser) do(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatalf("%s: %v", what, err)
	}
}

// eval evaluates expr (awaiting a promise) into a T, failing the test after 30s.
func eval[T any](b *browser, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fatalf("%s: %v", what, err)
	}
	return v
}

// wait polls the page until the JavaScript expression cond is true, failing the test, named by
// what it waited for, at the deadline.
func (b *browser) wait(what string, d time.Duration, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			b.fatalf("%s: not within %s (condition %s; last error %v)", what, d, cond, last)
		}
		<-tick.C
	}
}

// fatalf fails the test with what the page shows (and a screenshot among the artefacts).
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 3000)`)); err == nil {
		msg += "\n--- the page (" + b.user + ") ---\n" + text
	}
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		path := filepath.Join(artefacts(b.t), "failure-"+b.user+".png")
		if os.WriteFile(path, png, 0o644) == nil {
			msg += "\n(screenshot: " + path + ")"
		}
	}
	b.t.Fatal(msg)
}

// screenshot writes the viewport as a PNG among the artefacts.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artefacts(b.t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// js quotes s as a JavaScript string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// The list shows a job submitted through the API while it is open; the job's page shows its
// running step's lines as the container writes them and then the job's end, without a reload;
// a submit through the form generated from the job type's schema creates the job.
func TestConsoleSubmitterFollowsAJob(t *testing.T) {
	const cluster, step = "x86_64", "build-rpm"
	b := newBrowser(t, alice)
	lf := lqUseLogFile(t, cluster)
	tag := fmt.Sprintf("console-%d", time.Now().UnixNano())
	lf.add(t, 3, tag)

	// The list, open before the job exists: the job appears without a reload.
	b.do("open the jobs list", time.Minute, chromedp.Navigate(omni.URL+"/ui/#/jobs?service=team-a"))
	b.wait("the jobs list", 30*time.Second, `!!document.querySelector('#jobs tbody') && document.querySelector('#me').textContent.startsWith('alice')`)
	eval[bool](b, "mark the page", `window.omniNoReload = true`)
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step, "console": "demo"}))
	row := fmt.Sprintf(`#jobs tr[data-id=%s]`, js(j.ID))
	b.wait("the submitted job in the list", 30*time.Second, fmt.Sprintf(`!!document.querySelector(%s)`, js(row)))
	b.wait("the job running in the list", time.Minute, fmt.Sprintf(`document.querySelector(%s).dataset.status === 'running'`, js(row)))
	b.screenshot("console-list.png")

	// Its page, reached as a reader does: the link, then the step.
	b.do("open the job's page", 30*time.Second, chromedp.Click(chromedp.CSS(row+" a")))
	stepButton := fmt.Sprintf(`.step[data-step=%s]`, js(step))
	b.wait("the job's steps", 30*time.Second, fmt.Sprintf(`!!document.querySelector(%s)`, js(stepButton)))
	b.do("choose the step", 30*time.Second, chromedp.Click(chromedp.CSS(stepButton)))
	lines := `[...document.querySelectorAll('#log .line .t')].map((e) => e.textContent)`
	shown := func(n int) string {
		return fmt.Sprintf(`document.querySelector('#log-state').textContent === 'live' && %s.length === %d`, lines, n)
	}
	b.wait("the step's first lines, live", time.Minute, shown(3))
	for range 2 {
		lf.add(t, 2, tag)
		b.wait("the lines the container wrote", 30*time.Second, shown(len(lf.texts)))
	}
	// The pane follows the end until the reader scrolls up; then it stays where the reader is.
	atEnd := `(() => { const p = document.querySelector('#log'); return p.scrollTop > 0 && p.scrollTop + p.clientHeight >= p.scrollHeight - 4; })()`
	lf.add(t, 40, tag)
	b.wait("a screenful more lines", 30*time.Second, shown(len(lf.texts)))
	b.wait("the pane scrolled to the end", 10*time.Second, atEnd)
	eval[bool](b, "scroll the log up", `(document.querySelector('#log').scrollTop = 0, true)`)
	b.wait("the follow button", 10*time.Second, `!document.querySelector('#log-follow').hidden`)
	lf.add(t, 2, tag)
	b.wait("lines written while the reader looks above", 30*time.Second, shown(len(lf.texts)))
	if top := eval[float64](b, "the log's position", `document.querySelector('#log').scrollTop`); top != 0 {
		t.Errorf("the pane scrolled to %v while the reader was at the top", top)
	}
	b.do("follow again", 10*time.Second, chromedp.Click(chromedp.CSS(`#log-follow`)))
	b.wait("the pane back at the end", 10*time.Second, atEnd)
	// Search marks the matching lines.
	b.do("search the log", 10*time.Second, chromedp.SendKeys(chromedp.CSS(`#log-search`), tag+" line 7:"))
	b.wait("one match", 10*time.Second, `document.querySelector('#log-hits').textContent === '1 match' && document.querySelector('#log .line.hit').dataset.n === '7'`)
	eval[bool](b, "clear the search", `(document.querySelector('#log-search').value = '', document.querySelector('#log-search').dispatchEvent(new Event('input')), true)`)
	if got := eval[bool](b, "the download link", `document.querySelector('#log-download').classList.contains('disabled')`); !got {
		t.Errorf("the download link is enabled while the step runs (the API answers 409 then)")
	}

	// The job ends: its page shows the end and the archived log, still without a reload.
	lqSetHold(t, cluster, j.ID, "")
	b.wait("the job succeeded on its page", 2*time.Minute, `document.querySelector('#status').textContent === 'succeeded'`)
	b.wait("the log archived to its end", 2*time.Minute, `document.querySelector('#log-state').textContent === 'complete' && !document.querySelector('#log-download').classList.contains('disabled')`)
	if d := cmp.Diff(lf.texts, eval[[]string](b, "the log's lines", lines)); d != "" {
		t.Errorf("the log pane's lines (-written +shown):\n%s", d)
	}
	if !eval[bool](b, "the page's mark", `window.omniNoReload === true`) {
		t.Errorf("the page was reloaded")
	}
	b.wait("the step succeeded on the timeline", 30*time.Second, fmt.Sprintf(`document.querySelector(%s).dataset.status === 'succeeded'`, js(stepButton)))
	b.screenshot("console-job.png")
	// On a phone: one column.
	b.do("a phone's screen", 10*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	b.screenshot("console-job-phone.png")
	b.do("a desktop screen again", 10*time.Second, chromedp.EmulateViewport(1200, 860))

	// A viewer of another service sees no cancel button: alice, a submitter, sees both.
	if !eval[bool](b, "the rerun button", `!!document.querySelector('#rerun') && !document.querySelector('#cancel')`) {
		t.Errorf("a submitter's page of an ended job: want rerun and no cancel")
	}

	// The form generated from buildrpm's schema submits a job.
	b.do("open the job types", 30*time.Second, chromedp.Click(chromedp.CSS(`a[data-nav=tasks]`)))
	b.wait("the buildrpm job type", 30*time.Second, `!!document.querySelector('section[data-task=buildrpm] a.button')`)
	b.do("open the buildrpm form", 30*time.Second, chromedp.Click(chromedp.CSS(`section[data-task=buildrpm] a.button`)))
	b.wait("the generated form", 30*time.Second, `!!document.querySelector('#param-srpmUrl') && !!document.querySelector('#param-with')`)
	const srpm = "https://repo.example.org/src/console-form-1.0-1.src.rpm"
	b.do("fill in and send the form", 30*time.Second,
		chromedp.SetValue(chromedp.CSS(`#submit select[name=arch]`), cluster),
		chromedp.SendKeys(chromedp.CSS(`#param-srpmUrl`), srpm),
		chromedp.SendKeys(chromedp.CSS(`#param-with`), "tests"),
		chromedp.Click(chromedp.CSS(`#submit button[type=submit]`)))
	b.wait("the new job's page", 30*time.Second, fmt.Sprintf(`/^#\/jobs\/[0-9a-z]{26}(\?|$)/.test(location.hash) && !location.hash.startsWith(%s)`, js("#/jobs/"+j.ID)))
	hash := eval[string](b, "the new job's id", `location.hash`)
	id := regexp.MustCompile(`^#/jobs/([0-9a-z]{26})`).FindStringSubmatch(hash)[1]
	got := alice.do(t, http.MethodGet, "/v1/jobs/"+id, nil).job(t)
	want := map[string]any{"srpmUrl": srpm, "with": []any{"tests"}}
	if got.Task != "buildrpm" || got.Service != "team-a" || got.Arch != cluster || got.Parameters["srpmUrl"] != srpm {
		t.Errorf("the form's job: %s/%s/%s parameters %v; want buildrpm of team-a on %s with %v", got.Service, got.Task, got.Arch, got.Parameters, cluster, want)
	}
	if d := cmp.Diff(want["with"], got.Parameters["with"]); d != "" {
		t.Errorf("the form's list parameter (-want +got):\n%s", d)
	}
	b.wait("the form's job on its page", 30*time.Second, fmt.Sprintf(`document.querySelector('h1 .mono') && document.querySelector('h1 .mono').textContent === %s`, js(id)))
	alice.wait(t, id, "ended", terminal)
}

// A viewer's page of a running job has no cancel or rerun button, and forcing a cancel from the
// page (the console's own API call) is refused with 403 and a message that says why; the queue
// shows the instances, the job types offer no form, another service's job is "not found".
func TestConsoleViewerCannotCancel(t *testing.T) {
	const cluster = "x86_64"
	b := newBrowser(t, bob)
	j := root.submit(t, rpmJob("team-b", cluster, map[string]string{platform.AnnotationHoldStep: "build-rpm"}))
	t.Cleanup(func() {
		if r := root.do(t, http.MethodDelete, "/v1/jobs/"+j.ID, nil); r.code != http.StatusOK {
			t.Errorf("cancel %s: %d %s", j.ID, r.code, r.body)
		}
	})
	root.wait(t, j.ID, "running", func(j *jobs.Job) bool { return j.Status == jobs.StatusRunning })

	b.do("open the job's page", time.Minute, chromedp.Navigate(omni.URL+"/ui/#/jobs/"+j.ID))
	b.wait("the running job's page", 30*time.Second, `document.querySelector('#status') && document.querySelector('#status').textContent === 'running'`)
	if eval[bool](b, "the buttons", `!!document.querySelector('#cancel') || !!document.querySelector('#rerun')`) {
		t.Errorf("a viewer sees a cancel or rerun button")
	}
	type forced struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	}
	got := eval[forced](b, "a forced cancel", fmt.Sprintf(`import('./api.js').then((m) => m.api('DELETE', 'v1/jobs/' + %s)
		.then(() => ({status: 200, message: 'cancelled'}), (e) => ({status: e.status, message: m.explain(e, 'cancel this job')})))`, js(j.ID)))
	if got.Status != http.StatusForbidden || !regexp.MustCompile(`^Not allowed: you may not cancel this job`).MatchString(got.Message) {
		t.Errorf("forced cancel as a viewer: %+v; want 403 and a message saying it is not allowed", got)
	}
	if j := root.do(t, http.MethodGet, "/v1/jobs/"+j.ID, nil).job(t); j.Status != jobs.StatusRunning || j.CancelRequested {
		t.Errorf("after a viewer's forced cancel the job is %s (cancel requested %v), want running", j.Status, j.CancelRequested)
	}

	// The queue shows every engine instance's slots; the job types offer a viewer no form.
	eval[bool](b, "open the queue", `(location.hash = '#/queue', true)`)
	b.wait("the engine instances of both arches", 30*time.Second, `[...document.querySelectorAll('#instances tbody tr td:nth-child(2)')].map((td) => td.textContent).sort().join() === 'aarch64,x86_64'`)
	eval[bool](b, "open the job types", `(location.hash = '#/tasks', true)`)
	b.wait("the job types", 30*time.Second, `document.querySelectorAll('section.task').length >= 4`)
	if eval[bool](b, "the submit links", `!!document.querySelector('section.task a.button')`) {
		t.Errorf("a viewer is offered a submit form")
	}

	// A job of a service the viewer may not see is "not found", said as such.
	other := alice.submit(t, rpmJob("team-a", cluster, nil))
	eval[bool](b, "open another service's job", fmt.Sprintf(`(location.hash = %s, true)`, js("#/jobs/"+other.ID)))
	b.wait("the not-found message", 30*time.Second, `document.querySelector('#banner').textContent.startsWith('Not found:')`)
	alice.wait(t, other.ID, "ended", terminal)
}

// A job whose pod the infrastructure evicted runs again as attempt 2; its page lists attempt 1,
// whose step's archived log opens from there.
func TestConsoleShowsEarlierAttempts(t *testing.T) {
	const cluster, step = "x86_64", "build-rpm"
	ctx := context.Background()
	cs := omni.Platform.Cluster(cluster).Clientset()
	b := newBrowser(t, alice)
	lf := lqUseLogFile(t, cluster)
	lf.add(t, 4, fmt.Sprintf("attempts-%d", time.Now().UnixNano()))
	j := alice.submit(t, rpmJob("team-a", cluster, map[string]string{platform.AnnotationHoldStep: step}))
	running := func(attempt int) func(*jobs.Job) bool {
		return func(j *jobs.Job) bool {
			for _, s := range j.Steps {
				if s.Name == step {
					return j.CurrentAttempt() == attempt && s.Status == jobs.StepRunning
				}
			}
			return false
		}
	}
	alice.wait(t, j.ID, "step "+step+" of attempt 1 running", running(1))
	b.do("open the job's page", time.Minute, chromedp.Navigate(omni.URL+"/ui/#/jobs/"+j.ID+"?step="+step))
	lines := `[...document.querySelectorAll('#log .line .t')].map((e) => e.textContent)`
	b.wait("attempt 1's lines, live", time.Minute, fmt.Sprintf(`document.querySelector('#log-state').textContent === 'live' && %s.length === 4`, lines))

	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.Selector(j.ID)})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of attempt 1: %v (%d)", err, len(pods.Items))
	}
	if err := cs.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pods.Items[0].Name, Namespace: "default"}}); err != nil {
		t.Fatalf("evict pod %s: %v", pods.Items[0].Name, err)
	}
	alice.wait(t, j.ID, "step "+step+" of attempt 2 running", running(2))
	pods, err = cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.Selector(names.AttemptKey(j.ID, 2))})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of attempt 2: %v (%d)", err, len(pods.Items))
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	if _, err := cs.CoreV1().Pods("default").Patch(ctx, pods.Items[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	b.wait("the job succeeded on its page", 2*time.Minute, `document.querySelector('#status').textContent === 'succeeded'`)
	earlier := fmt.Sprintf(`#attempts button[data-attempt="1"][data-step=%s]`, js(step))
	b.wait("attempt 1 among the earlier attempts", 30*time.Second, fmt.Sprintf(`!!document.querySelector(%s)`, js(earlier)))
	b.do("open attempt 1's log", 30*time.Second, chromedp.Click(chromedp.CSS(earlier)))
	b.wait("attempt 1's archived log", 2*time.Minute, fmt.Sprintf(`document.querySelector('.logbar strong').textContent === %s && ['complete', 'incomplete'].includes(document.querySelector('#log-state').textContent) && %s.length > 0`, js(step+" (attempt 1)"), lines))
	if href := eval[string](b, "attempt 1's download link", `document.querySelector('#log-download').href`); !regexp.MustCompile(`/logs/` + step + `:download\?attempt=1$`).MatchString(href) {
		t.Errorf("attempt 1's download link %s, want ?attempt=1", href)
	}
	b.screenshot("console-attempts.png")
}
