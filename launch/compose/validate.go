package compose

import (
	"fmt"
	"slices"
	"strings"
)

// What compose-spec allows, for the parts the check reads and the names
// of everything else: a misspelt key (volume: for volumes:, readonly: for
// read_only:) would otherwise hide a mount from the check, where compose
// refuses the file. From the compose-spec schema as compose-go v2.16.2
// ships it; keys starting with x- are extensions, allowed anywhere.
var (
	topLevelKeys = []string{"configs", "include", "jobs", "models", "name", "networks", "secrets", "services", "version", "volumes"}
	serviceKeys  = []string{
		"annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent",
		"command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
		"cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on",
		"deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
		"entrypoint", "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
		"group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
		"links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
		"models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
		"platform", "ports", "post_start", "pre_start", "pre_stop", "privileged", "profiles", "provider",
		"pull_policy", "pull_refresh_after", "read_only", "restart", "runtime", "scale", "secrets",
		"security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls",
		"tmpfs", "tty", "ulimits", "umask", "use_api_socket", "user", "userns_mode", "uts", "volumes",
		"volumes_from", "working_dir",
	}
	mountKeys     = []string{"type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs", "image"}
	mountTypes    = []string{"bind", "volume", "tmpfs", "cluster", "npipe", "image"}
	mountOptions  = map[string][]string{"bind": {"propagation", "create_host_path", "recursive", "selinux"}, "volume": {"labels", "nocopy", "subpath"}, "tmpfs": {"size", "mode"}, "image": {"subpath"}}
	secretRefKeys = []string{"source", "target", "uid", "gid", "mode"}
	volumeDefKeys = []string{"name", "driver", "driver_opts", "external", "labels"}
	secretDefKeys = []string{"name", "environment", "file", "external", "labels", "driver", "driver_opts", "template_driver"}
	extendsKeys   = []string{"service", "file"}
	includeKeys   = []string{"path", "env_file", "project_directory"}
	externalKeys  = []string{"name"}
)

// validate checks one document after interpolation.
func validate(root *node) error {
	if err := knownKeys(root, "the top level", topLevelKeys); err != nil {
		return err
	}
	if err := mappingOf(root, "services", func(name string, svc *node) error { return validateService(name, svc) }); err != nil {
		return err
	}
	if err := mappingOf(root, "volumes", func(name string, v *node) error {
		if v.kind == nullNode {
			return nil
		}
		return validateDefinition("volumes."+name, v, volumeDefKeys)
	}); err != nil {
		return err
	}
	if err := mappingOf(root, "secrets", func(name string, v *node) error {
		return validateDefinition("secrets."+name, v, secretDefKeys)
	}); err != nil {
		return err
	}
	return listOf(root, "include", "include", func(where string, inc *node) error {
		if inc.kind == scalarNode {
			return nil
		}
		if inc.kind != mapNode {
			return loadErrorf(inc.pos, "%s: must be a path or a mapping with path:", where)
		}
		if err := knownKeys(inc, where, includeKeys); err != nil {
			return err
		}
		for _, k := range []string{"path", "env_file"} {
			if err := stringOrList(inc.get(k), where+"."+k); err != nil {
				return err
			}
		}
		return scalarAtKey(inc, "project_directory", where)
	})
}

func validateService(name string, svc *node) error {
	where := "services." + name
	if svc.kind != mapNode {
		return loadErrorf(svc.pos, "%s: a service must be a mapping", where)
	}
	if err := knownKeys(svc, where, serviceKeys); err != nil {
		return err
	}
	if err := listOf(svc, "volumes", where+".volumes", validateMount); err != nil {
		return err
	}
	if err := listOf(svc, "secrets", where+".secrets", func(where string, s *node) error {
		switch s.kind {
		case scalarNode:
			return nil
		case mapNode:
			if err := knownKeys(s, where, secretRefKeys); err != nil {
				return err
			}
			return scalarAtKey(s, "source", where)
		}
		return loadErrorf(s.pos, "%s: must be a secret's name or a mapping with source:", where)
	}); err != nil {
		return err
	}
	if err := listOf(svc, "profiles", where+".profiles", func(where string, p *node) error {
		if p.kind != scalarNode {
			return loadErrorf(p.pos, "%s: a profile is a name", where)
		}
		return nil
	}); err != nil {
		return err
	}
	ext := svc.get("extends")
	switch {
	case ext == nil, ext.kind == scalarNode:
		return nil
	case ext.kind != mapNode:
		return loadErrorf(ext.pos, "%s.extends: must be a service's name or a mapping with service:", where)
	case ext.get("service").str() == "":
		return loadErrorf(ext.pos, "%s.extends: service: is required", where)
	}
	if err := knownKeys(ext, where+".extends", extendsKeys); err != nil {
		return err
	}
	return scalarAtKey(ext, "file", where+".extends")
}

func validateMount(where string, m *node) error {
	switch m.kind {
	case scalarNode:
		if m.tag != "!!str" {
			return loadErrorf(m.pos, "%s: must be a string (SOURCE:TARGET[:ro]) or a mapping", where)
		}
		return nil
	case mapNode:
	default:
		return loadErrorf(m.pos, "%s: must be a string (SOURCE:TARGET[:ro]) or a mapping", where)
	}
	if err := knownKeys(m, where, mountKeys); err != nil {
		return err
	}
	typ := m.get("type")
	if typ == nil {
		return loadErrorf(m.pos, "%s: type: is required (one of %s)", where, strings.Join(mountTypes, ", "))
	}
	if !slices.Contains(mountTypes, typ.str()) {
		return loadErrorf(typ.pos, "%s.type: %q is not one of %s", where, typ.str(), strings.Join(mountTypes, ", "))
	}
	for _, k := range []string{"source", "target", "consistency"} {
		if err := scalarAtKey(m, k, where); err != nil {
			return err
		}
	}
	if _, err := boolValue(m.get("read_only")); err != nil {
		return loadErrorf(m.get("read_only").pos, "%s.read_only: %v", where, err)
	}
	for kind, keys := range mountOptions {
		opts := m.get(kind)
		if opts == nil {
			continue
		}
		if opts.kind != mapNode {
			return loadErrorf(opts.pos, "%s.%s: must be a mapping", where, kind)
		}
		if err := knownKeys(opts, where+"."+kind, keys); err != nil {
			return err
		}
	}
	for _, k := range []string{"create_host_path"} {
		if v := m.get("bind").get(k); v != nil {
			if _, err := boolValue(v); err != nil {
				return loadErrorf(v.pos, "%s.bind.%s: %v", where, k, err)
			}
		}
	}
	return nil
}

func validateDefinition(where string, def *node, keys []string) error {
	if def.kind != mapNode {
		return loadErrorf(def.pos, "%s: must be a mapping", where)
	}
	if err := knownKeys(def, where, keys); err != nil {
		return err
	}
	for _, k := range []string{"name", "file", "environment"} {
		if err := scalarAtKey(def, k, where); err != nil {
			return err
		}
	}
	ext := def.get("external")
	if ext == nil {
		return nil
	}
	if ext.kind == mapNode {
		if err := knownKeys(ext, where+".external", externalKeys); err != nil {
			return err
		}
		return scalarAtKey(ext, "name", where+".external")
	}
	if _, err := boolValue(ext); err != nil {
		return loadErrorf(ext.pos, "%s.external: %v", where, err)
	}
	return nil
}

func knownKeys(n *node, where string, keys []string) error {
	for _, p := range n.pairs {
		if !strings.HasPrefix(p.key, "x-") && !slices.Contains(keys, p.key) {
			return loadErrorf(p.pos, "%s: unknown key %s", where, p.key)
		}
	}
	return nil
}

// mappingOf checks that key holds a mapping (or nothing) and visits it.
func mappingOf(n *node, key string, visit func(string, *node) error) error {
	m := n.get(key)
	if m == nil || m.kind == nullNode {
		return nil
	}
	if m.kind != mapNode {
		return loadErrorf(m.pos, "%s: must be a mapping", key)
	}
	for _, p := range m.pairs {
		if err := visit(p.key, p.val); err != nil {
			return err
		}
	}
	return nil
}

// listOf checks that key holds a list (or nothing) and visits its items.
func listOf(n *node, key, where string, visit func(string, *node) error) error {
	l := n.get(key)
	if l == nil || l.kind == nullNode {
		return nil
	}
	if l.kind != seqNode {
		return loadErrorf(l.pos, "%s: must be a list", where)
	}
	for i, it := range l.items {
		if err := visit(fmt.Sprintf("%s[%d]", where, i), it); err != nil {
			return err
		}
	}
	return nil
}

func scalarAtKey(n *node, key, where string) error {
	if v := n.get(key); v != nil && v.kind != scalarNode && v.kind != nullNode {
		return loadErrorf(v.pos, "%s.%s: must be a string", where, key)
	}
	return nil
}

func stringOrList(n *node, where string) error {
	if n == nil || n.kind == scalarNode || n.kind == nullNode {
		return nil
	}
	if n.kind != seqNode {
		return loadErrorf(n.pos, "%s: must be a string or a list", where)
	}
	for _, it := range n.items {
		if it.kind != scalarNode {
			return loadErrorf(it.pos, "%s: must be a string or a list of strings", where)
		}
	}
	return nil
}
