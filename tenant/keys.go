package tenant

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// APIKeyPrefix starts every bearer key the admin API issues, so that a key
// leaked into a log or a repository is recognisable (and secret scanners
// can be taught the pattern).
const APIKeyPrefix = "qg-"

// AccessKeyIDPrefix starts every access key id the admin API issues, as
// AKIA starts AWS's own.
const AccessKeyIDPrefix = "QGAK"

// NewAPIKey returns a new bearer key: APIKeyPrefix and 32 random bytes in
// unpadded base64url (a valid HTTP token, safe in an environment variable),
// with its hash as the budgets file lists it.
func NewAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// NewAccessKey returns a new SigV4 key pair: an id of AccessKeyIDPrefix and
// 16 random base32 characters (upper case, as AWS ids are; 80 bits), and a
// secret of 40 characters (30 random bytes in base64, the length and
// alphabet of an AWS secret access key, which some tools check).
func NewAccessKey() (id, secret string, err error) {
	var b [10 + 30]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	id = AccessKeyIDPrefix + base32.StdEncoding.EncodeToString(b[:10])
	secret = base64.StdEncoding.EncodeToString(b[10:])
	return id, secret, nil
}

// sealer encrypts the secrets of access keys issued through the admin API.
// SigV4 verification needs the secret itself, so it cannot be stored as a
// hash; sealing keeps it unreadable to anyone with Redis access but not the
// secrets key.
type sealer struct{ aead cipher.AEAD }

// sealInfo separates this use of the secrets key from any other: HKDF gives
// an independent AES key for each info string.
const sealInfo = "quotagate tenant access-key secrets v1"

// sealVersion starts every sealed secret, so that the format can change.
const sealVersion = "v1:"

// minSecretsKey is the shortest secrets key accepted. HKDF cannot add
// entropy: a short admin token would make a weak AES key.
const minSecretsKey = 16

func newSealer(material []byte) (*sealer, error) {
	if len(material) < minSecretsKey {
		return nil, fmt.Errorf("tenant: the secrets key must be at least %d bytes, got %d", minSecretsKey, len(material))
	}
	key, err := hkdf.Key(sha256.New, material, nil, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// sealAAD binds a sealed secret to its tenant and key id, so that a sealed
// value copied into another tenant's override does not open there.
func sealAAD(tenant, keyID string) []byte { return []byte(tenant + "\x00" + keyID) }

func (s *sealer) seal(tenant, keyID, secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(secret)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, []byte(secret), sealAAD(tenant, keyID))
	return sealVersion + base64.RawStdEncoding.EncodeToString(out), nil
}

var errUnseal = errors.New("sealed secret does not open with the secrets key (was the key changed?)")

func (s *sealer) open(tenant, keyID, sealed string) (string, error) {
	b64, ok := strings.CutPrefix(sealed, sealVersion)
	if !ok {
		return "", errors.New("sealed secret of an unknown format")
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", errors.New("sealed secret is corrupt")
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], sealAAD(tenant, keyID))
	if err != nil {
		return "", errUnseal
	}
	return string(plain), nil
}
