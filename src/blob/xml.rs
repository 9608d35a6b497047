//! The XML bodies of the Blob service (List Blobs answers, error bodies, block lists), read and
//! written with quick-xml's serde support.

use std::collections::HashMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{BlobProps, CommittedBlock, ListPage};

#[derive(Debug, Deserialize)]
struct EnumerationResults {
    #[serde(rename = "Blobs", default)]
    blobs: BlobsXml,
    #[serde(rename = "NextMarker", default)]
    next_marker: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BlobsXml {
    #[serde(rename = "$value", default)]
    items: Vec<ItemXml>,
}

#[derive(Debug, Deserialize)]
enum ItemXml {
    Blob(BlobXml),
    BlobPrefix(PrefixXml),
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct NameXml {
    #[serde(rename = "@Encoded", default)]
    encoded: Option<String>,
    #[serde(rename = "$text", default)]
    value: String,
}

impl NameXml {
    /// Names with characters XML cannot carry come percent-encoded with `Encoded="true"`.
    fn decode(self) -> String {
        if self.encoded.as_deref() == Some("true") {
            percent_encoding::percent_decode_str(&self.value)
                .decode_utf8_lossy()
                .into_owned()
        } else {
            self.value
        }
    }
}

#[derive(Debug, Deserialize)]
struct BlobXml {
    #[serde(rename = "Name")]
    name: NameXml,
    #[serde(rename = "Properties")]
    properties: PropertiesXml,
    #[serde(rename = "Metadata", default)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct PropertiesXml {
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Etag")]
    etag: String,
    #[serde(rename = "Content-Length")]
    content_length: u64,
}

#[derive(Debug, Deserialize)]
struct PrefixXml {
    #[serde(rename = "Name")]
    name: NameXml,
}

#[derive(Debug, Deserialize)]
struct ErrorXml {
    #[serde(rename = "Code", default)]
    code: Option<String>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

/// Parses a List Blobs answer.
pub fn parse_list(body: &str) -> Result<ListPage, String> {
    let parsed: EnumerationResults =
        quick_xml::de::from_str(body).map_err(|e| format!("malformed List Blobs answer: {e}"))?;
    let mut page = ListPage {
        next_marker: parsed.next_marker.filter(|m| !m.is_empty()),
        ..Default::default()
    };
    for item in parsed.blobs.items {
        match item {
            ItemXml::Blob(b) => {
                let last_modified = parse_http_date(&b.properties.last_modified)?;
                let metadata = b
                    .metadata
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                page.blobs.push(BlobProps {
                    name: b.name.decode(),
                    size: b.properties.content_length,
                    etag: quoted(b.properties.etag),
                    last_modified,
                    metadata,
                });
            }
            ItemXml::BlobPrefix(p) => page.prefixes.push(p.name.decode()),
            ItemXml::Unknown => {}
        }
    }
    Ok(page)
}

/// An ETag in the form the ETag header has (quoted): Azure's listings give it bare, HEAD and
/// write answers quoted, and the same version must compare equal whichever it came from (the
/// block cache, the page-cache rule and `If-Match` use it).
fn quoted(etag: String) -> String {
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag
    } else {
        format!("\"{etag}\"")
    }
}

/// Parses the `<Error><Code>…</Code><Message>…</Message></Error>` body; `(code, first line of message)`.
pub fn parse_error(body: &str) -> (Option<String>, Option<String>) {
    match quick_xml::de::from_str::<ErrorXml>(body) {
        Ok(e) => (
            e.code,
            e.message
                .and_then(|m| m.lines().next().map(|l| l.trim().to_string())),
        ),
        Err(_) => (None, None),
    }
}

/// The XML declaration the service's examples start their request bodies with.
const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// The body of a Put Block List: every id as `<Latest>` (the staged block if there is one,
/// else the committed one), in order.
#[derive(Debug, Serialize)]
#[serde(rename = "BlockList")]
struct PutBlockListXml<'a> {
    #[serde(rename = "Latest")]
    latest: &'a [String],
}

/// Writes the body of a Put Block List:
/// `<?xml ...?><BlockList><Latest>id</Latest>...</BlockList>`.
pub fn put_block_list_body(ids: &[String]) -> Result<String, String> {
    let mut out = String::from(XML_DECLARATION);
    PutBlockListXml { latest: ids }
        .serialize(quick_xml::se::Serializer::new(&mut out))
        .map_err(|e| format!("cannot write the block list: {e}"))?;
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct GetBlockListXml {
    #[serde(rename = "CommittedBlocks", default)]
    committed: BlockSeqXml,
    #[serde(rename = "UncommittedBlocks", default)]
    uncommitted: BlockSeqXml,
}

#[derive(Debug, Default, Deserialize)]
struct BlockSeqXml {
    #[serde(rename = "Block", default)]
    blocks: Vec<BlockXml>,
}

#[derive(Debug, Deserialize)]
struct BlockXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Size")]
    size: u64,
}

/// Parses a Get Block List answer: the committed blocks, in order (uncommitted ones, if the
/// answer lists them, are ignored).
pub fn parse_block_list(body: &str) -> Result<Vec<CommittedBlock>, String> {
    Ok(blocks_of(parse_get_block_list(body)?.committed))
}

/// Parses a Get Block List answer's uncommitted blocks (`blocklisttype=uncommitted` or `all`).
pub fn parse_uncommitted_blocks(body: &str) -> Result<Vec<CommittedBlock>, String> {
    Ok(blocks_of(parse_get_block_list(body)?.uncommitted))
}

fn parse_get_block_list(body: &str) -> Result<GetBlockListXml, String> {
    quick_xml::de::from_str(body).map_err(|e| format!("malformed Get Block List answer: {e}"))
}

fn blocks_of(seq: BlockSeqXml) -> Vec<CommittedBlock> {
    seq.blocks
        .into_iter()
        .map(|b| CommittedBlock {
            id: b.name,
            size: b.size,
        })
        .collect()
}

/// Parses an RFC 1123 date as the service sends it (`Last-Modified`).
pub fn parse_http_date(s: &str) -> Result<SystemTime, String> {
    httpdate::parse_http_date(s).map_err(|e| format!("bad date {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<EnumerationResults ServiceEndpoint="http://127.0.0.1:10000/devstoreaccount1" ContainerName="c">
  <Prefix>dir/</Prefix>
  <Marker />
  <MaxResults>2</MaxResults>
  <Delimiter>/</Delimiter>
  <Blobs>
    <Blob>
      <Name>dir/a &amp; b #1 ü?.txt</Name>
      <Properties>
        <Creation-Time>Mon, 02 Jan 2023 10:00:00 GMT</Creation-Time>
        <Last-Modified>Tue, 03 Jan 2023 11:22:33 GMT</Last-Modified>
        <Etag>0x8DAED0B3C1E4F5A</Etag>
        <Content-Length>1234</Content-Length>
        <Content-Type>application/octet-stream</Content-Type>
        <BlobType>BlockBlob</BlobType>
      </Properties>
      <Metadata><Hdi_IsFolder>true</Hdi_IsFolder><owner>me</owner></Metadata>
      <OrMetadata />
    </Blob>
    <BlobPrefix><Name>dir/sub/</Name></BlobPrefix>
    <Blob>
      <Name Encoded="true">dir/%EF%BF%BEodd</Name>
      <Properties>
        <Last-Modified>Tue, 03 Jan 2023 11:22:33 GMT</Last-Modified>
        <Etag>"0x1"</Etag>
        <Content-Length>0</Content-Length>
      </Properties>
      <Metadata />
    </Blob>
    <BlobPrefix><Name>dir/z/</Name></BlobPrefix>
  </Blobs>
  <NextMarker>2!84!MDAwMDE5IWRpci9zdWIvZmlsZS50eHQhMDAwMDI4ITk5OTktMTItMzFUMjM6NTk6NTkuOTk5OTk5OVoh</NextMarker>
</EnumerationResults>"#;

    #[test]
    fn parses_blobs_prefixes_marker_and_odd_names() {
        let p = parse_list(PAGE).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.blobs[0].name, "dir/a & b #1 ü?.txt");
        assert_eq!(p.blobs[0].size, 1234);
        // Quoted, as HEAD and write answers give it (Azure lists it bare).
        assert_eq!(p.blobs[0].etag, "\"0x8DAED0B3C1E4F5A\"");
        assert_eq!(
            p.blobs[0].last_modified,
            httpdate::parse_http_date("Tue, 03 Jan 2023 11:22:33 GMT").unwrap()
        );
        assert_eq!(
            p.blobs[0].metadata.get("hdi_isfolder").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            p.blobs[0].metadata.get("owner").map(String::as_str),
            Some("me")
        );
        assert_eq!(p.blobs[1].name, "dir/\u{FFFE}odd");
        assert!(p.blobs[1].metadata.is_empty());
        assert_eq!(p.prefixes, vec!["dir/sub/", "dir/z/"]);
        assert!(p.next_marker.unwrap().starts_with("2!84!"));
    }

    #[test]
    fn empty_listing() {
        let p = parse_list(
            r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Prefix/><Blobs /><NextMarker /></EnumerationResults>"#,
        )
        .unwrap();
        assert_eq!(p, ListPage::default());
    }

    #[test]
    fn malformed_listing_is_an_error() {
        assert!(
            parse_list("<EnumerationResults><Blobs><Blob><Name>x</Name></Blob></Blobs>").is_err()
        );
        assert!(parse_list("not xml").is_err());
    }

    #[test]
    fn error_body() {
        let (code, msg) = parse_error(
            "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:2</Message></Error>",
        );
        assert_eq!(code.as_deref(), Some("AuthenticationFailed"));
        assert_eq!(
            msg.as_deref(),
            Some("Server failed to authenticate the request.")
        );
        assert_eq!(parse_error(""), (None, None));
    }

    #[test]
    fn block_list_body_is_exactly_the_documented_xml() {
        let ids = vec![
            "AAAAAA==".to_string(),
            "AQAAAA==".to_string(),
            "a+b/c=<&>".to_string(),
        ];
        assert_eq!(
            put_block_list_body(&ids).unwrap(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>\
             <Latest>AAAAAA==</Latest><Latest>AQAAAA==</Latest>\
             <Latest>a+b/c=&lt;&amp;&gt;</Latest></BlockList>"
        );
        let empty = put_block_list_body(&[]).unwrap();
        assert!(
            empty == "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList/>"
                || empty == "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList></BlockList>",
            "{empty}"
        );
    }

    #[test]
    fn parses_committed_blocks_and_ignores_uncommitted_ones() {
        // The sample answer of the Get Block List reference (blocklisttype=all), ids made real.
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>
<BlockList>
  <CommittedBlocks>
     <Block>
        <Name>QmxvY2tJZDE=</Name>
        <Size>4194304</Size>
     </Block>
     <Block>
        <Name>QmxvY2tJZDI=</Name>
        <Size>17</Size>
     </Block>
  </CommittedBlocks>
  <UncommittedBlocks>
    <Block>
      <Name>QmxvY2tJZDM=</Name>
      <Size>1024</Size>
    </Block>
  </UncommittedBlocks>
 </BlockList>";
        let blocks = parse_block_list(body).unwrap();
        assert_eq!(
            blocks,
            vec![
                CommittedBlock {
                    id: "QmxvY2tJZDE=".into(),
                    size: 4194304
                },
                CommittedBlock {
                    id: "QmxvY2tJZDI=".into(),
                    size: 17
                },
            ]
        );
        assert_eq!(
            parse_uncommitted_blocks(body).unwrap(),
            vec![CommittedBlock {
                id: "QmxvY2tJZDM=".into(),
                size: 1024
            }]
        );
        let none = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><UncommittedBlocks /></BlockList>";
        assert!(parse_uncommitted_blocks(none).unwrap().is_empty());
    }

    #[test]
    fn block_list_of_a_blob_without_blocks() {
        // A blob written by Put Blob has no committed blocks.
        for body in [
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><CommittedBlocks /></BlockList>",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><CommittedBlocks></CommittedBlocks><UncommittedBlocks /></BlockList>",
            "<BlockList/>",
        ] {
            assert_eq!(parse_block_list(body).unwrap(), vec![], "{body}");
        }
        assert!(parse_block_list("<BlockList><CommittedBlocks><Block><Name>x</Name></Block></CommittedBlocks></BlockList>").is_err());
        assert!(parse_block_list("not xml").is_err());
    }
}
