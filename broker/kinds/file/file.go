// Package file is the "file" kind: any file copied as it is. It has no
// freshness (the source always wins), no account, and no CLI facts.
package file

import (
	"bytes"

	"github.com/mc-broker/mc-broker/broker/credential"
)

// Kind is the opaque kind. Content shorter than MinFingerprinted bytes gets
// no fingerprint: 48 bits of a hash of a short PIN or password can be
// reversed by trying them all.
var Kind credential.Kind = kind{}

// MinFingerprinted is the shortest content that is fingerprinted.
const MinFingerprinted = 20

type kind struct{}

func (kind) Name() string     { return "file" }
func (kind) FileName() string { return "" }
func (kind) Facts() credential.Facts {
	return credential.Facts{LoginHint: "check that the file exists and holds the credential"}
}
func (kind) Inspect(data []byte) (credential.Info, error) {
	if err := credential.CheckCommon(data); err != nil {
		return credential.Info{}, err
	}
	if len(bytes.TrimSpace(data)) < MinFingerprinted {
		return credential.Info{}, nil
	}
	return credential.Info{Fingerprint: credential.Fingerprint(data)}, nil
}

func (kind) ForCopy(data []byte, _ credential.CopyOptions) ([]byte, error) { return data, nil }

// TakeBack is never needed (a file is never newer than its source); it
// returns the copy as it is.
func (kind) TakeBack(_, fromCopy []byte) ([]byte, error) { return fromCopy, nil }
