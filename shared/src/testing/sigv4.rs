//! AWS Signature Version 4 checked the way AWS checks it, written out from
//! the published algorithm (canonical request, string to sign, signing key
//! derived by HMAC from the secret) and independent of the SDK's signer, so
//! that a test can verify what the signer produced: the EKS token's
//! presigned URL, and the `flotilla` client's requests to a stack deployed
//! with `ApiAuth=IAM`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm every signature here names.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `bytes`' SHA-256, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `value` percent-encoded as SigV4 encodes: every byte but the unreserved
/// `A-Z a-z 0-9 - _ . ~`, in uppercase hex.
pub fn uri_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The signature of `canonical_request` at `amz_date` (`20260101T000000Z`)
/// in `scope` (`<date>/<region>/<service>/aws4_request`) with `secret`.
pub fn signature(
    secret: &str,
    amz_date: &str,
    scope: &str,
    canonical_request: &str,
) -> Result<String, String> {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut parts = scope.split('/');
    let mut next = |what: &str| {
        parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or(format!("the scope {scope:?} has no {what}"))
    };
    let (date, region, service) = (next("date")?, next("region")?, next("service")?);
    let key = hmac(format!("AWS4{secret}").as_bytes(), date);
    let key = hmac(&key, region);
    let key = hmac(&key, service);
    let key = hmac(&key, "aws4_request");
    Ok(hex::encode(hmac(&key, &string_to_sign)))
}

/// `raw_query` (as sent, percent-encoded) as SigV4's canonical query
/// string: each name and value decoded and encoded again strictly, sorted
/// by name then value, leaving out `skip`.
pub fn canonical_query(raw_query: &str, skip: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .filter(|(k, _)| !skip.contains(&k.as_ref()))
        .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request as a server received it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// `GET`, `PUT`, ….
    pub method: &'a str,
    /// The path as sent, percent-encoded.
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// Every header, names in any case.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// What a verified `Authorization` header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id.
    pub key_id: String,
    /// The region signed for.
    pub region: String,
    /// The service signed for.
    pub service: String,
    /// The headers the signature covers, lowercase.
    pub signed_headers: Vec<String>,
}

impl Received<'_> {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Checks the `Authorization` header of a request signed in its headers
/// (as API Gateway's IAM authorization does, for a service that encodes
/// its path twice, as every service but S3), with `secret`.
pub fn verify_header_signed(request: &Received<'_>, secret: &str) -> Result<Verified, String> {
    verify(request, secret, false)
}

/// [`verify_header_signed`] as S3 checks a request: its path encoded once
/// (as sent), and its payload's SHA-256 the `x-amz-content-sha256` header,
/// which must be the body's.
pub fn verify_s3_signed(request: &Received<'_>, secret: &str) -> Result<Verified, String> {
    verify(request, secret, true)
}

fn verify(request: &Received<'_>, secret: &str, s3: bool) -> Result<Verified, String> {
    let authorization = request
        .header("authorization")
        .first()
        .copied()
        .ok_or("no Authorization header")?;
    let fields = authorization
        .strip_prefix(ALGORITHM)
        .ok_or(format!("the Authorization is not {ALGORITHM}"))?;
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .ok_or(format!("the Authorization has no {name}"))
    };
    let (credential, signed, given) = (
        field("Credential")?,
        field("SignedHeaders")?,
        field("Signature")?,
    );
    let (key_id, scope) = credential
        .split_once('/')
        .ok_or("the Credential has no scope")?;
    let amz_date = request
        .header("x-amz-date")
        .first()
        .copied()
        .ok_or("no X-Amz-Date header")?;
    let mut scope_parts = scope.split('/');
    let date = scope_parts.next().unwrap_or_default();
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(format!(
            "the scope's date {date} is not X-Amz-Date's {amz_date}"
        ));
    }
    let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err("the signature does not cover the host".into());
    }
    let mut canonical_headers = String::new();
    for name in &signed_headers {
        let values = request.header(name);
        if values.is_empty() {
            return Err(format!("the signed header {name} was not received"));
        }
        let values: Vec<String> = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // Every service but S3 encodes the (already encoded) path again.
    let canonical_path = if request.path.is_empty() {
        "/".to_owned()
    } else if s3 {
        request.path.to_owned()
    } else {
        request
            .path
            .split('/')
            .map(uri_encode)
            .collect::<Vec<_>>()
            .join("/")
    };
    let payload = sha256_hex(request.body);
    if s3 {
        let claimed = request.header("x-amz-content-sha256");
        if claimed.first().copied() != Some(payload.as_str()) {
            return Err(format!(
                "x-amz-content-sha256 is {claimed:?}, the body's SHA-256 is {payload}"
            ));
        }
        if !signed_headers.iter().any(|h| h == "x-amz-content-sha256") {
            return Err("the signature does not cover x-amz-content-sha256".into());
        }
    }
    let canonical_request = format!(
        "{}\n{canonical_path}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        request.method,
        canonical_query(request.query, &[]),
    );
    let expected = signature(secret, amz_date, scope, &canonical_request)?;
    if expected != given {
        return Err(format!(
            "the signature is {given}, the request's is {expected} (canonical request:\n{canonical_request})"
        ));
    }
    let mut scope_parts = scope.split('/').skip(1);
    Ok(Verified {
        key_id: key_id.to_owned(),
        region: scope_parts.next().unwrap_or_default().to_owned(),
        service: scope_parts.next().unwrap_or_default().to_owned(),
        signed_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own worked example (the IAM `ListUsers` GET of the SigV4
    /// documentation): its published signature comes out.
    #[test]
    fn the_published_example_request_verifies_and_a_changed_one_does_not() {
        let headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("Host".to_owned(), "iam.amazonaws.com".to_owned()),
            ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
            (
                "Authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7".to_owned(),
            ),
        ];
        let request = Received {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let verified = verify_header_signed(&request, secret).unwrap();
        assert_eq!(verified.key_id, "AKIDEXAMPLE");
        assert_eq!(verified.service, "iam");
        assert!(verify_header_signed(&request, "another").is_err());
        let changed = Received {
            query: "Action=ListUsers&Version=2010-05-09",
            ..request
        };
        assert!(verify_header_signed(&changed, secret).is_err());
    }
}
