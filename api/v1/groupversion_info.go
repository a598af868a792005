// Package v1 contains the bus.hms.io/v1 API: ChangeTicket, Topic and
// Subscription, the resources teams declare in Git to get governed topics and
// credentials on the event bus.
//
// +kubebuilder:object:generate=true
// +groupName=bus.hms.io
package v1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "bus.hms.io", Version: "v1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
