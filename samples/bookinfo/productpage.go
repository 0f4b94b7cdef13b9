package bookinfo

import (
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Istio's productpage gives details and reviews 3s each and asks reviews
// twice. The fault-injection task ("reviews unavailable" after ~6s for jason
// when ratings is delayed 7s) exists because of exactly these numbers.
const (
	upstreamTimeout = 3 * time.Second
	reviewsAttempts = 2
)

// sessionCookie holds the signed-in user; productpage sends it downstream as
// the end-user header, which is what Istio's routing examples match on.
const sessionCookie = "session"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"seq": func(n int) []struct{} { return make([]struct{}, max(n, 0)) },
	"sub": func(a, b int) int { return a - b },
}).ParseFS(templateFS, "templates/*.html"))

type product struct {
	ID              int           `json:"id"`
	Title           string        `json:"title"`
	DescriptionHTML template.HTML `json:"descriptionHtml"`
}

var products = []product{{
	ID:    0,
	Title: "The Comedy of Errors",
	DescriptionHTML: `<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: ` +
		`The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one ` +
		`of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken ` +
		`identity, in addition to puns and word play.`,
}}

const (
	detailsUnavailable = "Sorry, product details are currently unavailable for this book."
	reviewsUnavailable = "Sorry, product reviews are currently unavailable for this book."
	ratingsUnavailable = "Sorry, product ratings are currently unavailable for this book."
)

type productPage struct {
	detailsURL, reviewsURL, ratingsURL string
	client                             *http.Client
	mux                                *http.ServeMux
}

func newProductPage(opts Options) *productPage {
	p := &productPage{
		detailsURL: baseURL(opts.DetailsHost, opts.ServicesDomain) + "/details/",
		reviewsURL: baseURL(opts.ReviewsHost, opts.ServicesDomain) + "/reviews/",
		ratingsURL: baseURL(opts.RatingsHost, opts.ServicesDomain) + "/ratings/",
		client:     newClient(),
		mux:        http.NewServeMux(),
	}
	static, _ := fs.Sub(staticFS, "static")
	m := p.mux
	m.HandleFunc("GET /{$}", p.index)
	m.HandleFunc("GET /index.html", p.index)
	m.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Product page is healthy")) // a failed write: the prober is gone
	})
	m.HandleFunc("POST /login", p.login)
	m.HandleFunc("GET /login", p.login)
	m.HandleFunc("GET /logout", p.logout)
	m.HandleFunc("GET /productpage", p.page)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, products)
	})
	m.HandleFunc("GET /api/v1/products/{id}", p.apiProxy(p.detailsURL, 1, detailsUnavailable))
	m.HandleFunc("GET /api/v1/products/{id}/reviews", p.apiProxy(p.reviewsURL, reviewsAttempts, reviewsUnavailable))
	m.HandleFunc("GET /api/v1/products/{id}/ratings", p.apiProxy(p.ratingsURL, 1, ratingsUnavailable))
	return p
}

func (p *productPage) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

func sessionUser(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	u, err := url.QueryUnescape(c.Value)
	if err != nil {
		return ""
	}
	return u
}

// downstreamHeaders are the headers productpage sends upstream: the
// propagated ones, with end-user taken from the session when signed in.
func downstreamHeaders(r *http.Request) http.Header {
	h := propagate(r.Header)
	if u := sessionUser(r); u != "" {
		h.Set("End-User", u)
	}
	return h
}

// fetch asks url up to attempts times, as Istio's productpage does for
// reviews, and returns the last failure's status.
func (p *productPage) fetch(r *http.Request, url string, attempts int, v any) (int, error) {
	var err error
	for range attempts {
		if err = getJSON(r.Context(), p.client, url, downstreamHeaders(r), upstreamTimeout, v); err == nil {
			return http.StatusOK, nil
		}
	}
	return statusOf(err), err
}

func (p *productPage) apiProxy(base string, attempts int, unavailable string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var raw json.RawMessage
		status, err := p.fetch(r, base+url.PathEscape(r.PathValue("id")), attempts, &raw)
		if err != nil {
			writeJSON(w, status, map[string]string{"error": unavailable})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw) // a failed write: the client is gone
	}
}

type pageData struct {
	User          string
	Product       product
	DetailsStatus int
	Details       bookDetails
	DetailsError  string
	ReviewsStatus int
	Reviews       reviewsResponse
	ReviewsError  string
}

func (p *productPage) page(w http.ResponseWriter, r *http.Request) {
	const productID = 0
	d := pageData{User: sessionUser(r), Product: products[productID]}
	id := strconv.Itoa(productID)

	// Sequential, as in Istio: traces then show details before reviews.
	var err error
	if d.DetailsStatus, err = p.fetch(r, p.detailsURL+id, 1, &d.Details); err != nil {
		d.DetailsError = detailsUnavailable
	}
	if d.ReviewsStatus, err = p.fetch(r, p.reviewsURL+id, reviewsAttempts, &d.Reviews); err != nil {
		d.ReviewsError = reviewsUnavailable
	}
	render(w, "productpage.html", d)
}

func (p *productPage) index(w http.ResponseWriter, r *http.Request) {
	render(w, "index.html", struct{ Details, Reviews, Ratings string }{p.detailsURL, p.reviewsURL, p.ratingsURL})
}

func render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplates.ExecuteTemplate(w, name, data); err != nil {
		// Headers are gone by now; the truncated page is the signal.
		return
	}
}

func (p *productPage) login(w http.ResponseWriter, r *http.Request) {
	user := r.FormValue("username")
	if user != "" {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: url.QueryEscape(user), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	http.Redirect(w, r, backTo(r), http.StatusFound)
}

func (p *productPage) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true})
	http.Redirect(w, r, backTo(r), http.StatusFound)
}

// backTo is where login and logout send the browser: back to the page it came
// from, as Istio's does, but only ever to a path on this site.
func backTo(r *http.Request) string {
	if ref, err := url.Parse(r.Referer()); err == nil && ref.Path != "" && ref.Path != "/login" && ref.Path != "/logout" {
		if u := ref.RequestURI(); strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") {
			return u
		}
	}
	return "/productpage"
}
