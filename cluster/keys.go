package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// The cluster key is the one root of trust between nodes: gossip is
// encrypted with a key derived from it, the transport handshake proves it,
// and the certificate authority of the Raft port's mutual TLS is derived from
// it (tls.go). A node therefore never runs with an empty or guessable key.

// MinKeyBytes is the least entropy a cluster key must carry once decoded.
const MinKeyBytes = 32

// minDistinctKeyBytes rejects keys that decode to 32+ bytes but are plainly
// not random (a repeated character, "aaaa…", a short phrase repeated). 32
// random bytes have 16 or fewer distinct values with a probability below
// 10^-20, so this never refuses a key that KeyGen or /dev/urandom made.
const minDistinctKeyBytes = 16

// KeyFile is the name, inside the data dir, of the key a single node
// without --cluster-key makes for itself.
const KeyFile = "cluster-key"

// Sentinel errors about the cluster key.
var (
	// ErrNoClusterKey: the node would form or join a cluster of several
	// nodes without a key.
	ErrNoClusterKey = errors.New("--cluster-key is required for a node that bootstraps with or joins other nodes; make one with `chime keygen` and give the same key to every node")
	// ErrWeakClusterKey: the key does not decode to 32 random-looking bytes.
	ErrWeakClusterKey = errors.New("--cluster-key must be at least 32 random bytes, hex or base64 encoded; make one with `chime keygen`")
)

// KeyGen returns a fresh 32-byte key, base64 encoded, as `chime keygen`
// prints it.
func KeyGen() (string, error) {
	b := make([]byte, MinKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ValidateKey checks that key decodes (hex, or standard or URL-safe base64
// with or without padding) to at least MinKeyBytes bytes that look random.
// Every derivation uses the key exactly as given, so nodes of one cluster
// must be given the same string, not the same bytes in another encoding;
// decoding here only measures the key.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w (it is empty)", ErrWeakClusterKey)
	}
	b, ok := decodeKey(key)
	if !ok {
		return fmt.Errorf("%w (it is neither hex nor base64)", ErrWeakClusterKey)
	}
	if len(b) < MinKeyBytes {
		return fmt.Errorf("%w (it decodes to %d bytes)", ErrWeakClusterKey, len(b))
	}
	var seen [256]bool
	distinct := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	if distinct < minDistinctKeyBytes {
		return fmt.Errorf("%w (its %d bytes hold only %d distinct values: not random)", ErrWeakClusterKey, len(b), distinct)
	}
	return nil
}

func decodeKey(key string) ([]byte, bool) {
	if len(key)%2 == 0 {
		if b, err := hex.DecodeString(key); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(key); err == nil {
			return b, true
		}
	}
	return nil, false
}

// deriveKey derives a subkey for one purpose from the cluster key, so that
// no two uses (gossip, handshake, TLS authority) share key material.
func deriveKey(clusterKey, label string) []byte {
	m := hmac.New(sha256.New, []byte(clusterKey))
	m.Write([]byte(label))
	return m.Sum(nil)
}

// singleNode reports whether cfg describes a node that forms a cluster on
// its own: the only case in which it may run on a key it made itself.
func singleNode(cfg Config) bool {
	return cfg.BootstrapExpect <= 1 && len(cfg.Join) == 0
}

// resolveKey returns the key the node runs with: the configured one if
// valid; for a single node without one, the key kept in its data dir (made
// on first start); otherwise an error wrapping ErrNoClusterKey or
// ErrWeakClusterKey.
func resolveKey(cfg Config, logger *slog.Logger) (string, error) {
	if cfg.ClusterKey != "" {
		if err := ValidateKey(cfg.ClusterKey); err != nil {
			return "", err
		}
		return cfg.ClusterKey, nil
	}
	if !singleNode(cfg) {
		return "", ErrNoClusterKey
	}
	key, path, created, err := LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return "", err
	}
	if created {
		logger.Warn("no --cluster-key: made a random one for this single node and stored it; give that key (--cluster-key) to any node that joins it",
			"key_file", path)
	} else {
		logger.Info("no --cluster-key: using the key this node made on its first start", "key_file", path)
	}
	return key, nil
}

// LoadOrCreateKey returns the key stored in dataDir/cluster-key, making a
// fresh one (file mode 0600) if there is none. A stored key that fails
// ValidateKey is an error, never silently replaced: the node's peers may
// know it.
func LoadOrCreateKey(dataDir string) (key, path string, created bool, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", false, fmt.Errorf("create data dir: %w", err)
	}
	path = filepath.Join(dataDir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if err := ValidateKey(key); err != nil {
			return "", path, false, fmt.Errorf("stored key %s: %w", path, err)
		}
		return key, path, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", path, false, fmt.Errorf("read stored cluster key: %w", err)
	}
	if key, err = KeyGen(); err != nil {
		return "", path, false, err
	}
	// Written to a temporary file and renamed, so a crash never leaves a
	// half-written key that the next start would refuse.
	tmp, err := os.CreateTemp(dataDir, KeyFile+".tmp-*")
	if err != nil {
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(key + "\n"); err != nil {
		tmp.Close()
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", path, false, fmt.Errorf("store cluster key: %w", err)
	}
	return key, path, true, nil
}
