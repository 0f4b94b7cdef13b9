package labtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium, which scripts/test installs.
const ChromiumPath = "/usr/bin/chromium"

// Browser is a headless Chromium driven over CDP for one test. Pages that
// throw an uncaught JavaScript exception fail the test: a console that
// renders but throws is broken for someone.
type Browser struct {
	// Ctx is the browser tab; derive chromedp.Run calls from it.
	Ctx context.Context

	mu         sync.Mutex
	exceptions []string
}

// NewBrowser starts Chromium in a fresh profile until the test ends, or
// skips the test with the reason when Chromium is not installed. The flags
// keep it off the network: this machine's closed network refuses
// Chromium's background connections, and tests talk only to loopback.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("no %s (scripts/test installs Debian's chromium): %v", ChromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.mu.Lock()
			b.exceptions = append(b.exceptions, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", ChromiumPath, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if ex := b.Exceptions(); len(ex) > 0 {
			t.Errorf("JavaScript exceptions in the page:\n%s", strings.Join(ex, "\n"))
		}
	})
	return b
}

// Exceptions are the uncaught exceptions pages have thrown so far.
func (b *Browser) Exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.exceptions...)
}

// Do runs steps in the tab, bounded so a page that never becomes ready
// fails the test rather than hanging it.
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression in the tab's page and decodes its
// value.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
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
	return WaitJS(`document.body && document.body.dataset.ready === ` + jsString(page))
}

// WaitJS waits until a JavaScript expression is true in the page.
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(45*time.Second))
}

// Screenshot writes a PNG of the tab's viewport to dir/name.png when dir is
// not empty (MESHLAB_SCREENSHOTS, say).
func Screenshot(dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if dir == "" {
			return nil
		}
		png, err := chromedp.CaptureScreenshot()(ctx, tg)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	})
}

func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`)
	return "'" + r.Replace(s) + "'"
}
