//! Content-Format identifiers (RFC 7252 §12.3 and the IANA "CoAP Content-Formats" registry).

use core::fmt;

/// A Content-Format identifier, the value of the Content-Format and Accept options
/// (RFC 7252 §5.10.3, §5.10.4, §12.3).
///
/// Commonly used registered formats are associated constants; any other 16-bit value
/// is representable too. `Display` prints the media type when it is known:
///
/// ```
/// use coap_proto::wire::ContentFormat;
/// assert_eq!(ContentFormat::JSON.to_string(), "application/json");
/// assert_eq!(ContentFormat(65000).to_string(), "65000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentFormat(pub u16);

macro_rules! formats {
    ($( $name:ident = ($value:literal, $text:literal); )*) => {
        impl ContentFormat {
            $(
                #[doc = concat!("`", $text, "` (", stringify!($value), ").")]
                pub const $name: ContentFormat = ContentFormat($value);
            )*

            /// The media type (with parameters and content coding) of a registered
            /// format, or `None` if this crate does not know it.
            pub const fn media_type(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($text), )*
                    _ => None,
                }
            }
        }
    };
}

formats! {
    TEXT_PLAIN = (0, "text/plain; charset=utf-8");
    COSE_ENCRYPT0 = (16, "application/cose; cose-type=\"cose-encrypt0\"");
    COSE_MAC0 = (17, "application/cose; cose-type=\"cose-mac0\"");
    COSE_SIGN1 = (18, "application/cose; cose-type=\"cose-sign1\"");
    LINK_FORMAT = (40, "application/link-format");
    XML = (41, "application/xml");
    OCTET_STREAM = (42, "application/octet-stream");
    EXI = (47, "application/exi");
    JSON = (50, "application/json");
    JSON_PATCH_JSON = (51, "application/json-patch+json");
    MERGE_PATCH_JSON = (52, "application/merge-patch+json");
    CBOR = (60, "application/cbor");
    CWT = (61, "application/cwt");
    MULTIPART_CORE = (62, "application/multipart-core");
    CBOR_SEQ = (63, "application/cbor-seq");
    SENML_JSON = (110, "application/senml+json");
    SENSML_JSON = (111, "application/sensml+json");
    SENML_CBOR = (112, "application/senml+cbor");
    SENSML_CBOR = (113, "application/sensml+cbor");
    SENML_EXI = (114, "application/senml-exi");
    SENSML_EXI = (115, "application/sensml-exi");
    YANG_DATA_CBOR = (140, "application/yang-data+cbor; id=sid");
    COAP_GROUP_JSON = (256, "application/coap-group+json");
    PKIX_CERT = (287, "application/pkix-cert");
    PKCS10 = (286, "application/pkcs10");
    PKCS7_CERTS = (281, "application/pkcs7-mime; smime-type=certs-only");
    SENML_XML = (310, "application/senml+xml");
    SENSML_XML = (311, "application/sensml+xml");
    TD_JSON = (432, "application/td+json");
    JSON_DEFLATE = (11050, "application/json (deflate)");
    CBOR_DEFLATE = (11060, "application/cbor (deflate)");
    LWM2M_TLV = (11542, "application/vnd.oma.lwm2m+tlv");
    LWM2M_JSON = (11543, "application/vnd.oma.lwm2m+json");
    LWM2M_CBOR = (11544, "application/vnd.oma.lwm2m+cbor");
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.media_type() {
            Some(text) => f.pad(text),
            None => write!(f, "{}", self.0),
        }
    }
}
