package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Validity of what the development PKI issues.
const (
	DevCAValidity   = 10 * 365 * 24 * time.Hour
	DevCertValidity = 5 * 365 * 24 * time.Hour
)

// Dev returns the settings of a process in a development cluster whose PKI
// lives in dir: on first use it creates there a CA, a gossip key, and this
// process's certificate signed by the CA. Every process of a local cluster
// shares dir, so the CA's key is there too: fine on one machine, and the
// reason operators across machines pass their own files to Load instead.
// Processes starting at once may race to create a file; the first one to
// link it in place wins and the others read it.
func Dev(dir string, id Identity) (*Settings, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("security: creating the development PKI directory: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := createOnce(caFile, newCA); err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "gossip.key")
	if err := createOnce(keyFile, func() ([]byte, error) {
		k := make([]byte, GossipKeyBytes)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(k) + "\n"), nil
	}); err != nil {
		return nil, err
	}
	certFile := filepath.Join(dir, id.Role+"-"+id.ID+".pem")
	if err := createOnce(certFile, func() ([]byte, error) { return issue(caFile, id) }); err != nil {
		return nil, err
	}
	return Load(caFile, certFile, certFile, keyFile, id)
}

// createOnce writes what make returns to file unless file exists.
func createOnce(file string, make func() ([]byte, error)) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	b, err := make()
	if err != nil {
		return fmt.Errorf("security: creating %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".new-*")
	if err != nil {
		return fmt.Errorf("security: creating %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	if err := os.Link(tmp.Name(), file); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("security: creating %s: %w", file, err)
	}
	return nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA makes a CA certificate and key, in one PEM file.
func newCA() ([]byte, error) {
	now := time.Now()
	return sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "hellochat development CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(DevCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
}

// issue makes a certificate for id signed by the CA in caFile, with its
// key, in one PEM file.
func issue(caFile string, id Identity) ([]byte, error) {
	ca, err := tls.LoadX509KeyPair(caFile, caFile)
	if err != nil {
		return nil, fmt.Errorf("loading the development CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return nil, err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if id.Role == RoleNode {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	now := time.Now()
	return sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: id.ID, OrganizationalUnit: []string{id.Role}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(DevCertValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
		URIs:        []*url.URL{id.uri()},
	}, caCert, ca.PrivateKey)
}

// sign makes a new key and the certificate tmpl describes for it, signed
// by parent's key (self-signed when parent is nil), in one PEM file.
func sign(tmpl, parent *x509.Certificate, parentKey any) ([]byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM...), nil
}

// DevFiles are the files ExportDev writes for one process, the arguments
// of Load.
type DevFiles struct {
	CA, Cert, GossipKey string
}

// ExportDev issues (or reuses) id's certificate in the development PKI in
// dir and writes to out only what that process needs: the CA's
// certificate without its key, its own certificate and key, and the gossip
// key. A process given these files can join the cluster but cannot mint
// certificates, nor sign as another member. Files already in out are
// replaced, so out follows dir.
func ExportDev(dir string, id Identity, out string) (DevFiles, error) {
	if _, err := Dev(dir, id); err != nil {
		return DevFiles{}, err
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return DevFiles{}, fmt.Errorf("security: creating %s: %w", out, err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return DevFiles{}, fmt.Errorf("security: reading the development CA: %w", err)
	}
	var certs []byte
	for rest := ca; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(b)...)
		}
	}
	files := DevFiles{
		CA:        filepath.Join(out, "ca.pem"),
		Cert:      filepath.Join(out, id.Role+"-"+id.ID+".pem"),
		GossipKey: filepath.Join(out, "gossip.key"),
	}
	copies := []struct {
		to   string
		data func() ([]byte, error)
	}{
		{files.CA, func() ([]byte, error) { return certs, nil }},
		{files.Cert, func() ([]byte, error) { return os.ReadFile(filepath.Join(dir, id.Role+"-"+id.ID+".pem")) }},
		{files.GossipKey, func() ([]byte, error) { return os.ReadFile(filepath.Join(dir, "gossip.key")) }},
	}
	for _, c := range copies {
		b, err := c.data()
		if err != nil {
			return DevFiles{}, fmt.Errorf("security: exporting %s: %w", c.to, err)
		}
		if err := replaceFile(c.to, b); err != nil {
			return DevFiles{}, err
		}
	}
	// What was written must be enough on its own.
	if _, err := Load(files.CA, files.Cert, files.Cert, files.GossipKey, id); err != nil {
		return DevFiles{}, fmt.Errorf("security: the exported files do not load: %w", err)
	}
	return files, nil
}

// replaceFile writes b to file (0600) under a temporary name and renames
// it into place, so a reader never sees half of it.
func replaceFile(file string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".new-*")
	if err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	return nil
}
