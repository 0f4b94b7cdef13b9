package labtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium, which scripts/test installs.
const ChromiumPath = "/usr/bin/chromium"

// Browser is a headless Chromium tab driven over CDP for one test. It
// records what the page reports as broken — uncaught exceptions, console
// errors and warnings (cytoscape reports a bad style as a warning) — so a
// page that renders but complains fails the test.
type Browser struct {
	// Ctx is the tab; derive chromedp calls from it.
	Ctx context.Context

	mu       sync.Mutex
	errs     []string
	expected []string // substrings of messages a test provoked on purpose
}

// NewBrowser starts Chromium in a fresh profile for the test's duration,
// with a 1280x800 viewport, or skips the test with the reason when Chromium
// is not installed. The flags keep it off the network: this machine's
// closed network refuses Chromium's background connections, and tests talk
// only to loopback. At the end the test fails on any page complaint not
// taken by Expect or Forget.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("no %s (scripts/test installs Debian's chromium): %v", ChromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(1280, 800),
	}
	// Chromium now and then dies while starting on a loaded machine (its
	// pipe closes before it answers): a fresh process is tried then, and
	// nothing after the start is ever retried.
	var ctx context.Context
	for attempt := 1; ; attempt++ {
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, chromedp.UserDataDir(t.TempDir()))...)
		c, cancel := chromedp.NewContext(actx)
		err := chromedp.Do(c, chromedp.EmulateViewport(1280, 800))
		if err == nil {
			ctx = c
			t.Cleanup(func() { cancel(); cancelAlloc() })
			break
		}
		cancel()
		cancelAlloc()
		if attempt == 3 || !strings.Contains(err.Error(), "failed to start") {
			t.Fatalf("start %s (attempt %d): %v", ChromiumPath, attempt, err)
		}
		t.Logf("chromium did not start (attempt %d), trying a fresh process: %v", attempt, err)
	}
	b := &Browser{Ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() { // ends with the tab, when the test's cleanup cancels ctx
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		if e := b.Errors(); e != "" {
			t.Errorf("the page reported errors:\n%s", e)
		}
	})
	return b
}

// Expect lets messages containing substr pass: an error the test provoked.
func (b *Browser) Expect(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expected = append(b.expected, substr)
}

// Forget drops what the page has reported so far, and what was expected.
func (b *Browser) Forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs, b.expected = nil, nil
}

// Errors are the page's complaints so far that no Expect allowed, one per
// line.
func (b *Browser) Errors() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for _, e := range b.errs {
		for _, x := range b.expected {
			if strings.Contains(e, x) {
				continue next
			}
		}
		out = append(out, e)
	}
	return strings.Join(out, "\n")
}

// Do runs steps in the tab, bounded so a page that never becomes ready
// fails the test rather than hanging it (a guard, not a timing assertion).
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b.Errors())
	}
}

// Eval evaluates a JavaScript expression in the tab's page and decodes its
// value.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// WaitReady waits until the page says it has shown its data: the console
// sets document.body.dataset.ready to the page's name once it has.
func WaitReady(page string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitReady(chromedp.CSS(`body[data-ready=` + JSString(page) + `]`))
}

// WaitJS waits until a JavaScript expression is true in the page.
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second))
}

// Screenshot writes a 1280x800 PNG of the tab to dir/name.png when dir is
// not empty (MESHLAB_SCREENSHOTS, say).
func Screenshot(dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if dir == "" {
			return nil
		}
		shot, err := chromedp.CaptureScreenshot()(ctx, tg)
		if err != nil {
			return fmt.Errorf("screenshot %s: %w", name, err)
		}
		if cfg, err := png.DecodeConfig(bytes.NewReader(shot)); err != nil || cfg.Width != 1280 || cfg.Height != 800 {
			return fmt.Errorf("screenshot %s: %dx%d (%v), want a 1280x800 PNG", name, cfg.Width, cfg.Height, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), shot, 0o644)
	})
}

// JSString quotes s as a JavaScript (JSON) string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
