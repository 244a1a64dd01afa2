//go:build !cgo

package vx

// vx wraps a C library: build with CGO_ENABLED=1 (and a C compiler).
var _ = vx_requires_CGO_ENABLED_1
