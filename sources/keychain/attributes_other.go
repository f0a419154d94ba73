//go:build !(darwin && cgo)

package keychain

// platformAttributes reads attributes through security without -w: the
// only way without Apple's frameworks (and the way the tests run).
func platformAttributes(s *Security) attributeReader { return securityAttributes{s} }
