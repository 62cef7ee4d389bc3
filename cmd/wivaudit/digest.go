package main

import (
	"fmt"

	"github.com/wiv/out_wivaudit/digest"
)

// runKeygen creates a digest signing key: the file Digest_Signing_Key names. It never prints the key.
func runKeygen(e *env, c *command, args []string) int {
	fs := flags(e, c)
	pos, code, ok := parse(e, fs, args, "FILE")
	if !ok {
		return code
	}
	s, err := digest.GenerateKeyFile(pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v (an existing key is never replaced: customers verify with its public key)\n", fs.Name(), err)
		return exitRefused
	}
	fmt.Fprintf(e.stdout, "wrote the signing key %s (readable by its owner only); set Digest_Signing_Key to its absolute path\n", pos[0])
	fmt.Fprintf(e.stdout, "public key fingerprint: %s\n", s.Fingerprint())
	fmt.Fprintf(e.stdout, "give customers the output of: wivaudit digest public-key --key %s\n", pos[0])
	return exitOK
}

// runPublicKey prints what customers are given to verify digests: the public key PEM and its fingerprint.
func runPublicKey(e *env, c *command, args []string) int {
	fs := flags(e, c)
	key := fs.String("key", "", "the signing key file (Digest_Signing_Key); required")
	if _, code, ok := parse(e, fs, args); !ok {
		return code
	}
	if *key == "" {
		return usageError(e, fs, "--key is required")
	}
	s, err := digest.LoadSigner(*key)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitRefused
	}
	fmt.Fprintf(e.stdout, "%sfingerprint (SHA-256 of the key's DER, as each digest's public_key_fingerprint): %s\n", s.PublicKeyPEM(), s.Fingerprint())
	return exitOK
}
