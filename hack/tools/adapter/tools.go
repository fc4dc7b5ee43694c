//go:build tools

// Package tools pins the Knative ApiServerSource adapter built by hack/tools.sh.
package tools

import _ "knative.dev/eventing/cmd/apiserver_receive_adapter"
