package compose

import "slices"

// mergeInto merges over into base as compose merges an override:
// mappings key by key, sequences appended (without exact duplicates),
// anything else replaced; a null override changes nothing.
func mergeInto(base, over *node, path []string) error {
	for _, p := range over.pairs {
		old := base.get(p.key)
		if old == nil {
			base.set(p.key, p.pos, p.val)
			continue
		}
		merged, err := mergeValue(old, p.val, append(path, p.key))
		if err != nil {
			return err
		}
		base.set(p.key, p.pos, merged)
	}
	return nil
}

func mergeValue(base, over *node, path []string) (*node, error) {
	if over.kind == nullNode {
		return base, nil
	}
	switch base.kind {
	case mapNode:
		if over.kind != mapNode {
			return nil, loadErrorf(over.pos, "cannot override %s: it is a mapping", pathString(path))
		}
		return base, mergeInto(base, over, path)
	case seqNode:
		if over.kind != seqNode {
			return nil, loadErrorf(over.pos, "cannot override %s: it is a list", pathString(path))
		}
		for _, it := range over.items {
			if !slices.ContainsFunc(base.items, it.equal) {
				base.items = append(base.items, it)
			}
		}
		return base, nil
	}
	return over, nil
}

// unique keeps one mount per target and one secret per target in each
// service: the last one takes effect, in the place of the first.
func unique(model *node) error {
	for _, svc := range model.get("services").entries() {
		for _, list := range []string{"volumes", "secrets"} {
			seq := svc.val.get(list)
			if seq == nil {
				continue
			}
			var kept []*node
			index := map[string]int{}
			for i, it := range seq.items {
				key := it.get("target").str()
				if list == "secrets" && !it.has("target") {
					key = "/run/secrets/" + it.get("source").str()
				}
				if list == "volumes" && !it.has("target") {
					return loadErrorf(it.pos, "services.%s.volumes[%d] has no target", svc.key, i)
				}
				if j, ok := index[key]; ok {
					kept[j] = it
					continue
				}
				index[key] = len(kept)
				kept = append(kept, it)
			}
			seq.items = kept
		}
	}
	return nil
}

// applyResets removes from model what an override tagged !reset or
// !override, so that the override's value (if any) replaces it. Like
// compose, it removes mapping keys only, not list entries.
func applyResets(model *node, resets [][]string) {
	for _, path := range resets {
		n := model
		for i, key := range path {
			if n == nil || n.kind != mapNode {
				break
			}
			if i == len(path)-1 {
				n.del(key)
				break
			}
			n = n.get(key)
		}
	}
}

// resetsUnder are the resets below prefix, relative to it.
func resetsUnder(resets [][]string, prefix ...string) [][]string {
	var out [][]string
	for _, r := range resets {
		if len(r) > len(prefix) && slices.Equal(r[:len(prefix)], prefix) {
			out = append(out, r[len(prefix):])
		}
	}
	return out
}
