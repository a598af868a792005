// Package v1 contains the bus.hms.io/v1 API: ChangeTicket, Topic and
// Subscription, the resources teams declare in Git to get governed topics and
// credentials on the event bus.
//
// +kubebuilder:object:generate=true
// +groupName=bus.hms.io
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "bus.hms.io", Version: "v1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	// It uses apimachinery only, so importing the API pulls in no
	// controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ChangeTicket{}, &ChangeTicketList{},
		&Topic{}, &TopicList{},
		&Subscription{}, &SubscriptionList{},
		&NameClaim{}, &NameClaimList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
