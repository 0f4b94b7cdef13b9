// Package webhook owns the control plane's admission webhooks: the
// admission.k8s.io/v1 AdmissionReview exchange shared by every webhook, and
// the validating webhook for Istio configuration, which parses and validates
// a resource exactly as `meshlab apply` does and denies it with the same
// words. The mutating (injection) webhook's logic lives in package inject.
package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Paths the control plane serves the webhooks on (port 15017).
const (
	PathInject   = "/inject"
	PathValidate = "/validate"
)

// maxReview bounds a review's body; Kubernetes objects are at most ~1.5 MiB
// in etcd, and a review carries two of them.
const maxReview = 8 << 20

// Admit is one webhook's decision on one request. It never returns nil.
type Admit func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Serve answers AdmissionReviews with admit. A body that is not a review is
// a 400; every review gets a review back, its response carrying the
// request's UID as the API server requires.
func Serve(admit Admit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReview))
		if err != nil {
			http.Error(w, "read the admission review: "+err.Error(), http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil {
			http.Error(w, "decode the admission review: "+err.Error(), http.StatusBadRequest)
			return
		}
		if review.Request == nil {
			http.Error(w, "the admission review has no request", http.StatusBadRequest)
			return
		}
		resp := admit(review.Request)
		resp.UID = review.Request.UID
		out := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
			Response: resp,
		}
		b, err := json.Marshal(out)
		if err != nil {
			http.Error(w, "encode the admission response: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// A failed write: the API server timed out or went away, and
		// applies the webhook's failurePolicy itself.
		_, _ = w.Write(b)
	})
}

// Allow admits a request unchanged.
func Allow() *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// Deny refuses a request; the API server shows msg to the user after
// `admission webhook "<name>" denied the request: `.
func Deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Message: msg, Reason: reason(code),
	}}
}

func reason(code int32) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	}
	return metav1.StatusReasonInternalError
}

// Patch admits a request with a JSON patch applied.
func Patch(patch []byte) *admissionv1.AdmissionResponse {
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

// Errorf is Deny for a request the webhook could not read.
func Errorf(format string, args ...any) *admissionv1.AdmissionResponse {
	return Deny(http.StatusBadRequest, fmt.Sprintf(format, args...))
}
