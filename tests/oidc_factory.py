"""Google-style OIDC tokens signed with a local RSA key, and the certificate page that verifies them."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

PUSH_SA = "push-invoker@local-dev.iam.gserviceaccount.com"


@dataclass
class SigningKey:
    key_id: str
    private_pem: bytes
    cert_pem: str

    @classmethod
    def generate(cls, key_id: str) -> "SigningKey":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key_id)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
        )
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        return cls(key_id, private_pem, cert.public_bytes(serialization.Encoding.PEM).decode())

    def token(self, *, audience: str, email: str = PUSH_SA, expires_in: float = 3600,
              issuer: str = "https://accounts.google.com", key_id: str | None = None, **claims_over) -> str:
        """A signed token; ``claims_over`` replaces or adds claims (values as given, any JSON type)."""
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "email": email, "email_verified": True,
                  "sub": "1234567890", "iat": now - 5, "exp": int(now + expires_in), **claims_over}
        signer = crypt.RSASigner.from_string(self.private_pem, key_id or self.key_id)
        return jwt.encode(signer, claims).decode()


def certs_page(*keys: SigningKey) -> dict[str, str]:
    """What https://www.googleapis.com/oauth2/v1/certs serves: key id -> PEM certificate."""
    return {k.key_id: k.cert_pem for k in keys}
