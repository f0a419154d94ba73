package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// resources maps the kinds `kube manifest` writes to their API paths.
var resources = map[string]string{
	"v1/ServiceAccount":                 "/api/v1/namespaces/%s/serviceaccounts",
	"v1/Secret":                         "/api/v1/namespaces/%s/secrets",
	"v1/Pod":                            "/api/v1/namespaces/%s/pods",
	"rbac.authorization.k8s.io/v1/Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles",
	"rbac.authorization.k8s.io/v1/RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings",
	"apps/v1/Deployment":                       "/apis/apps/v1/namespaces/%s/deployments",
	"apps/v1/StatefulSet":                      "/apis/apps/v1/namespaces/%s/statefulsets",
	"apps/v1/DaemonSet":                        "/apis/apps/v1/namespaces/%s/daemonsets",
}

// ApplyOptions qualify a server-side apply.
type ApplyOptions struct {
	FieldManager string
	// DryRun asks the server to validate, admit and merge the object as it
	// would, and store nothing (dryRun=All).
	DryRun bool
	// Force takes over fields another manager owns.
	Force bool
}

// Apply sends obj (JSON) as a server-side apply and returns the object the
// server made (or, with DryRun, would make) of it. obj names its
// apiVersion, kind, namespace and name.
func (c *Client) Apply(ctx context.Context, obj []byte, o ApplyOptions) ([]byte, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	pattern, ok := resources[head.APIVersion+"/"+head.Kind]
	if !ok || head.Metadata.Name == "" || head.Metadata.Namespace == "" {
		return nil, fmt.Errorf("cannot apply %s %s: unknown kind, or no name or namespace", head.APIVersion, head.Kind)
	}
	q := url.Values{"fieldManager": {o.FieldManager}}
	if o.DryRun {
		q.Set("dryRun", "All")
	}
	if o.Force {
		q.Set("force", "true")
	}
	path := fmt.Sprintf(pattern, url.PathEscape(head.Metadata.Namespace)) + "/" + url.PathEscape(head.Metadata.Name)
	return c.Do(ctx, Request{Method: http.MethodPatch, Path: path, Query: q, Body: obj, ContentType: "application/apply-patch+yaml"})
}

// Create posts obj (JSON) to its kind's collection; DryRun stores nothing.
func (c *Client) Create(ctx context.Context, obj []byte, dryRun bool) ([]byte, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(obj, &head); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	pattern, ok := resources[head.APIVersion+"/"+head.Kind]
	if !ok {
		return nil, fmt.Errorf("cannot create %s %s: unknown kind", head.APIVersion, head.Kind)
	}
	path := pattern
	if strings.Contains(pattern, "%s") {
		path = fmt.Sprintf(pattern, url.PathEscape(head.Metadata.Namespace))
	}
	var q url.Values
	if dryRun {
		q = url.Values{"dryRun": {"All"}}
	}
	return c.Do(ctx, Request{Method: http.MethodPost, Path: path, Query: q, Body: obj})
}
