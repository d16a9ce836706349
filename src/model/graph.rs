//! What the ONNX graph itself says about the context length when config.json does not: a learned
//! position table (GPT-2's `wpe`) has one row per position, and the model cannot go past it.
//! ONNX Runtime does not show a session's initializers, so this reads the model file's protobuf
//! directly: node op types and edges and initializer shapes only, seeking past the weights.
//! Rotary-position models (Llama, Qwen2) have no such table: nothing is inferred for them.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Ops that carry position ids through unchanged in meaning (casts and reshapes).
const PASS_THROUGH: [&str; 6] = ["Cast", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten"];
/// Longest name or op type believed; a longer one means the file is not what it seems.
const MAX_STRING: u64 = 1 << 20;

/// Rows of the position table that `position_ids` index, from an .onnx file.
pub(super) fn position_table_rows_in_file(path: &Path) -> Option<usize> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    position_table_rows(io::BufReader::new(file), len)
}

/// Rows of the position table that `position_ids` index, from a model's bytes.
pub(super) fn position_table_rows_in_bytes(bytes: &[u8]) -> Option<usize> {
    position_table_rows(io::Cursor::new(bytes), bytes.len() as u64)
}

/// The smallest first dimension of a rank-2 initializer that a Gather indexes with the graph input
/// `position_ids` (or a cast or reshape of it); `None` when there is none or the file cannot be read.
fn position_table_rows(source: impl Read + Seek, len: u64) -> Option<usize> {
    let mut graph = Graph::default();
    let mut r = Reader { r: source, pos: 0 };
    parse_model(&mut r, len, &mut graph).ok()?;
    graph.position_table_rows()
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    /// Initializer shapes by name.
    shapes: HashMap<String, Vec<i64>>,
}

#[derive(Default)]
struct Node {
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Graph {
    fn position_table_rows(&self) -> Option<usize> {
        let mut positions: HashSet<&str> = HashSet::from(["position_ids"]);
        loop {
            let before = positions.len();
            for n in &self.nodes {
                if PASS_THROUGH.contains(&n.op.as_str()) && n.inputs.first().is_some_and(|i| positions.contains(i.as_str())) {
                    positions.extend(n.outputs.iter().map(String::as_str));
                }
            }
            if positions.len() == before {
                break;
            }
        }
        self.nodes
            .iter()
            .filter(|n| n.op == "Gather" && n.inputs.len() >= 2 && positions.contains(n.inputs[1].as_str()))
            .filter_map(|n| match self.shapes.get(&n.inputs[0])?.as_slice() {
                &[rows, _] if rows > 0 => Some(rows as usize),
                _ => None,
            })
            .min()
    }
}

struct Reader<R> {
    r: R,
    pos: u64,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<R: Read + Seek> Reader<R> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8];
        self.r.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> io::Result<(u64, u8)> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    /// The end offset of a length-delimited field starting here, checked against `end`.
    fn sub_end(&mut self, end: u64) -> io::Result<u64> {
        let n = self.varint()?;
        let sub = self.pos.checked_add(n).filter(|&e| e <= end).ok_or_else(|| bad("field runs past its message"))?;
        Ok(sub)
    }

    fn seek_to(&mut self, to: u64) -> io::Result<()> {
        if to != self.pos {
            self.r.seek(SeekFrom::Start(to))?;
            self.pos = to;
        }
        Ok(())
    }

    fn skip(&mut self, wire: u8, end: u64) -> io::Result<()> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.seek_to(self.pos + 8),
            5 => self.seek_to(self.pos + 4),
            2 => {
                let e = self.sub_end(end)?;
                self.seek_to(e)
            }
            _ => Err(bad("unsupported wire type")),
        }
    }

    fn string(&mut self, end: u64) -> io::Result<String> {
        let e = self.sub_end(end)?;
        if e - self.pos > MAX_STRING {
            return Err(bad("string too long"));
        }
        let mut buf = vec![0u8; (e - self.pos) as usize];
        self.r.read_exact(&mut buf)?;
        self.pos = e;
        String::from_utf8(buf).map_err(|_| bad("string not UTF-8"))
    }
}

/// ModelProto: the graph is field 7.
fn parse_model<R: Read + Seek>(r: &mut Reader<R>, end: u64, g: &mut Graph) -> io::Result<()> {
    while r.pos < end {
        match r.key()? {
            (7, 2) => {
                let e = r.sub_end(end)?;
                parse_graph(r, e, g)?;
            }
            (_, wire) => r.skip(wire, end)?,
        }
    }
    Ok(())
}

/// GraphProto: nodes are field 1, initializers field 5.
fn parse_graph<R: Read + Seek>(r: &mut Reader<R>, end: u64, g: &mut Graph) -> io::Result<()> {
    while r.pos < end {
        match r.key()? {
            (1, 2) => {
                let e = r.sub_end(end)?;
                let node = parse_node(r, e, g)?;
                g.nodes.push(node);
            }
            (5, 2) => {
                let e = r.sub_end(end)?;
                parse_tensor(r, e, g)?;
            }
            (_, wire) => r.skip(wire, end)?,
        }
    }
    r.seek_to(end)
}

/// NodeProto: inputs 1, outputs 2, op type 4, attributes 5 (whose subgraphs, fields 6 and 11 of
/// AttributeProto, are read into the same graph: an `If` branch indexes the same table).
fn parse_node<R: Read + Seek>(r: &mut Reader<R>, end: u64, g: &mut Graph) -> io::Result<Node> {
    let mut node = Node::default();
    while r.pos < end {
        match r.key()? {
            (1, 2) => node.inputs.push(r.string(end)?),
            (2, 2) => node.outputs.push(r.string(end)?),
            (4, 2) => node.op = r.string(end)?,
            (5, 2) => {
                let attr_end = r.sub_end(end)?;
                while r.pos < attr_end {
                    match r.key()? {
                        (6 | 11, 2) => {
                            let e = r.sub_end(attr_end)?;
                            parse_graph(r, e, g)?;
                        }
                        (_, wire) => r.skip(wire, attr_end)?,
                    }
                }
            }
            (_, wire) => r.skip(wire, end)?,
        }
    }
    Ok(node)
}

/// TensorProto: dims 1 (packed or not), name 8; the data is skipped.
fn parse_tensor<R: Read + Seek>(r: &mut Reader<R>, end: u64, g: &mut Graph) -> io::Result<()> {
    let (mut dims, mut name) = (Vec::new(), String::new());
    while r.pos < end {
        match r.key()? {
            (1, 0) => dims.push(r.varint()? as i64),
            (1, 2) => {
                let e = r.sub_end(end)?;
                while r.pos < e {
                    dims.push(r.varint()? as i64);
                }
            }
            (8, 2) => name = r.string(end)?,
            (_, wire) => r.skip(wire, end)?,
        }
    }
    g.shapes.insert(name, dims);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built ModelProto: Gather(table [rows, 4], Cast(position_ids)).
    fn model(rows: u8, index_input: &str) -> Vec<u8> {
        fn field(n: u8, payload: &[u8]) -> Vec<u8> {
            let mut v = vec![n << 3 | 2, payload.len() as u8];
            v.extend_from_slice(payload);
            v
        }
        let cast = [field(1, index_input.as_bytes()), field(2, b"pos"), field(4, b"Cast")].concat();
        let gather = [field(1, b"table"), field(1, b"pos"), field(2, b"out"), field(4, b"Gather")].concat();
        // dims as packed varints, then a name, then 16 bytes of raw data (skipped).
        let tensor = [field(1, &[rows, 4]), field(8, b"table"), field(9, &[0u8; 16])].concat();
        let graph = [field(1, &cast), field(1, &gather), field(5, &tensor)].concat();
        [vec![0x08, 0x08], field(7, &graph)].concat() // ir_version 8, then the graph
    }

    #[test]
    fn finds_a_learned_position_table() {
        assert_eq!(position_table_rows_in_bytes(&model(100, "position_ids")), Some(100));
        // A table indexed by something else (token ids) is a vocabulary, not positions.
        assert_eq!(position_table_rows_in_bytes(&model(100, "input_ids")), None);
        // Garbage and truncation give nothing rather than an error.
        assert_eq!(position_table_rows_in_bytes(b"\xff\xff\xff"), None);
        let m = model(100, "position_ids");
        assert_eq!(position_table_rows_in_bytes(&m[..m.len() - 5]), None);
    }
}
