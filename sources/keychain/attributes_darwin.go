//go:build darwin && cgo

package keychain

// Built only on a Mac with cgo (`make build` there). It asks the Security
// framework for an item's attributes, never its data: attribute queries do
// not touch the item's access list, so they never prompt, and they cost no
// process start per poll.

import (
	"context"

	gokeychain "github.com/keybase/go-keychain"
)

// platformAttributes asks the framework only when the real security
// program is in use: with MC_BROKER_SECURITY_BIN naming a fake (the
// tests, on a Mac too), the fake's items are not in the Keychain, so
// their dates must come from the fake as well.
func platformAttributes(s *Security) attributeReader {
	if s.Bin != "" && s.Bin != DefaultBin {
		return securityAttributes{s}
	}
	return frameworkAttributes{}
}

type frameworkAttributes struct{}

func (frameworkAttributes) attributes(_ context.Context, item Item) (Attributes, error) {
	q := gokeychain.NewItem()
	q.SetSecClass(gokeychain.SecClassGenericPassword)
	q.SetService(item.Service)
	q.SetAccount(item.Account)
	q.SetMatchLimit(gokeychain.MatchLimitOne)
	q.SetReturnAttributes(true)
	results, err := gokeychain.QueryItem(q)
	switch {
	case err == gokeychain.ErrorInteractionNotAllowed:
		return Attributes{}, &LockedError{Item: item}
	case err != nil:
		return Attributes{}, err
	case len(results) == 0:
		return Attributes{}, &NotFoundError{Item: item}
	}
	return Attributes{
		Label:    results[0].Label,
		Modified: results[0].ModificationDate.UTC().Format("20060102150405Z"),
	}, nil
}
