package local

import "testing"

func TestOptedOut(t *testing.T) {
	tests := []struct {
		name                string
		labels, annotations map[string]string
		want                bool
	}{
		{"nothing said", nil, nil, false},
		{"annotation false", nil, map[string]string{InjectAnnotation: "false"}, true},
		{"annotation true", nil, map[string]string{InjectAnnotation: "true"}, false},
		{"label false", map[string]string{InjectAnnotation: "false"}, nil, true},
		{"label wins over annotation", map[string]string{InjectAnnotation: "true"}, map[string]string{InjectAnnotation: "false"}, false},
		{"label false wins", map[string]string{InjectAnnotation: "false"}, map[string]string{InjectAnnotation: "true"}, true},
	}
	for _, tt := range tests {
		if got := optedOut(tt.labels, tt.annotations); got != tt.want {
			t.Errorf("%s: optedOut = %v, want %v", tt.name, got, tt.want)
		}
	}
}
