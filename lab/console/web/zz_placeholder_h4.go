// Package web is a compile-only placeholder (H4) until H3's package is merged; the lead deletes this file.
package web

import "net/http"

func Handler() http.Handler { return http.NotFoundHandler() }
