//! Unit tests of the whole `msg` module: payloads are built by hand with a tiny little-endian
//! writer and decoded against hand-written definitions.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::schema::{MAX_NESTING_DEPTH, MAX_ZERO_SIZE_ARRAY_LEN, Primitive};
use super::*;

const SEP: &str =
    "================================================================================";

/// Little-endian writer for ROS1 wire data.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn b(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u8(self, v: u8) -> Self {
        self.b(&[v])
    }
    fn i8(self, v: i8) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn u16(self, v: u16) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn i16(self, v: i16) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn u32(self, v: u32) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn i32(self, v: i32) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn i64(self, v: i64) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn f32(self, v: f32) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn f64(self, v: f64) -> Self {
        self.b(&v.to_le_bytes())
    }
    fn str(self, s: &str) -> Self {
        self.u32(s.len() as u32).b(s.as_bytes())
    }
    fn header(self, seq: u32, sec: u32, nsec: u32, frame: &str) -> Self {
        self.u32(seq).u32(sec).u32(nsec).str(frame)
    }
}

fn schema(msgtype: &str, def: &str) -> MessageSchema {
    MessageSchema::parse(msgtype, def).expect("definition compiles")
}

fn golden(s: &MessageSchema, data: &[u8]) -> serde_json::Value {
    to_golden_json(s, &s.decode(data).expect("payload decodes"))
}

fn header_def(name: &str) -> String {
    format!("{SEP}\nMSG: {name}\nuint32 seq\ntime stamp\nstring frame_id\n")
}

#[test]
fn every_builtin_type() {
    let def = "bool a\nint8 b\nuint8 c\nint16 d\nuint16 e\nint32 f\nuint32 g\nint64 h\nuint64 i\n\
               float32 j\nfloat64 k\nstring l\ntime m\nduration n\nbyte o\nchar p\n";
    let s = schema("test/All", def);
    let data = W::default()
        .u8(1)
        .i8(-5)
        .u8(250)
        .i16(-30000)
        .u16(65000)
        .i32(i32::MIN)
        .u32(u32::MAX)
        .i64(i64::MIN)
        .u64(u64::MAX)
        .f32(0.1)
        .f64(-2.5)
        .str("héllo")
        .u32(7)
        .u32(999_999_999)
        .i32(-3)
        .i32(-500)
        .i8(-1)
        .u8(200)
        .0;
    let v = s.decode(&data).expect("decodes");
    let Value::Message(fields) = &v else {
        panic!("not a message")
    };
    assert_eq!(
        fields,
        &vec![
            Value::Bool(true),
            Value::Int(-5),
            Value::UInt(250),
            Value::Int(-30000),
            Value::UInt(65000),
            Value::Int(i32::MIN.into()),
            Value::UInt(u32::MAX.into()),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float32(0.1),
            Value::Float64(-2.5),
            Value::String("héllo".into()),
            Value::Time {
                sec: 7,
                nsec: 999_999_999
            },
            Value::Duration {
                sec: -3,
                nsec: -500
            },
            Value::Int(-1),
            Value::UInt(200),
        ]
    );
    assert_eq!(
        to_golden_json(&s, &v),
        json!({"a": true, "b": -5, "c": 250, "d": -30000, "e": 65000, "f": i32::MIN,
               "g": u32::MAX, "h": i64::MIN, "i": u64::MAX, "j": f64::from(0.1f32), "k": -2.5,
               "l": "héllo", "m": {"sec": 7, "nsec": 999_999_999},
               "n": {"sec": -3, "nsec": -500}, "o": -1, "p": 200})
    );
}

#[test]
fn non_finite_floats_and_lossy_strings() {
    let s = schema("test/F", "float32 a\nfloat64 b\nfloat64 c\nstring d\n");
    let data = W::default()
        .f32(f32::NAN)
        .f64(f64::INFINITY)
        .f64(f64::NEG_INFINITY)
        .u32(2)
        .b(&[0xff, b'a'])
        .0;
    assert_eq!(
        golden(&s, &data),
        json!({"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": "\u{fffd}a"})
    );
}

#[test]
fn nested_header_and_field_paths() {
    let def = format!(
        "Header header\ngeometry_msgs/Pose pose\n{}{SEP}\nMSG: geometry_msgs/Pose\nPoint position\n\
         Quaternion orientation\n{SEP}\nMSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z\n\
         {SEP}\nMSG: geometry_msgs/Quaternion\nfloat64 x\nfloat64 y\nfloat64 z\nfloat64 w\n",
        header_def("std_msgs/Header")
    );
    let s = schema("geometry_msgs/PoseStamped", &def);
    let data = W::default()
        .header(3, 10, 20, "map")
        .f64(1.0)
        .f64(2.0)
        .f64(3.0)
        .f64(0.0)
        .f64(0.0)
        .f64(0.0)
        .f64(1.0)
        .0;
    let v = s.decode(&data).expect("decodes");
    let x = s.field_path("pose.position.x").expect("exists");
    assert_eq!(v.get(&x), Some(&Value::Float64(1.0)));
    assert_eq!(x.ros_type(), "float64");
    assert_eq!(x.primitive(), Some(Primitive::Float64));
    let stamp = s.field_path("header.stamp").expect("exists");
    assert_eq!(v.get(&stamp), Some(&Value::Time { sec: 10, nsec: 20 }));
    assert_eq!(v.get(&stamp).and_then(Value::to_f64), Some(10.000_000_02));
    let pos = s.field_path("pose.position").expect("exists");
    assert_eq!(pos.ros_type(), "geometry_msgs/Point");
    assert!(!pos.is_numeric());
    assert_eq!(pos.primitive(), None);
    // A message of numbers flattens in definition order.
    assert_eq!(
        v.get(&pos).and_then(Value::to_f64_vec),
        Some(vec![1.0, 2.0, 3.0])
    );
    assert!(s.field_path("pose.nope").is_err());
    assert!(s.field_path("pose.position.x.y").is_err());
    assert!(s.field_path("").is_err());
    assert_eq!(
        golden(&s, &data),
        json!({"header": {"seq": 3, "stamp": {"sec": 10, "nsec": 20}, "frame_id": "map"},
               "pose": {"position": {"x": 1.0, "y": 2.0, "z": 3.0},
                        "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}})
    );
    let got = s
        .decode_fields(&data, &[x.clone(), stamp.clone(), pos.clone()])
        .expect("decodes");
    assert_eq!(
        got,
        vec![
            v.get(&x).cloned().expect("present"),
            v.get(&stamp).cloned().expect("present"),
            v.get(&pos).cloned().expect("present"),
        ]
    );
}

#[test]
fn fixed_and_variable_arrays() {
    let def = "float64[] q\nint32[3] f\nuint8[] small\nchar[2] chars\nint8[] signed\nbyte[2] bytes\n\
               uint8[] big\nbool[] flags\nstring[] names\ntime[2] times\n";
    let s = schema("test/Arr", def);
    let big: Vec<u8> = (0..100u8).collect();
    let data = W::default()
        .u32(2)
        .f64(1.5)
        .f64(-1.5)
        .i32(1)
        .i32(-2)
        .i32(3)
        .u32(3)
        .b(&[1, 2, 255])
        .b(&[65, 66])
        .u32(2)
        .b(&[0xff, 0x7f])
        .b(&[0x80, 1])
        .u32(100)
        .b(&big)
        .u32(3)
        .b(&[1, 0, 1])
        .u32(2)
        .str("a")
        .str("")
        .u32(1)
        .u32(2)
        .u32(3)
        .u32(4)
        .0;
    let v = s.decode(&data).expect("decodes");
    let hex: String = Sha256::digest(&big)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(
        to_golden_json(&s, &v),
        json!({"q": [1.5, -1.5], "f": [1, -2, 3], "small": [1, 2, 255], "chars": [65, 66],
               "signed": [-1, 127], "bytes": [-128, 1], "big": {"len": 100, "sha256": hex},
               "flags": [true, false, true], "names": ["a", ""],
               "times": [{"sec": 1, "nsec": 2}, {"sec": 3, "nsec": 4}]})
    );
    let path = |p: &str| s.field_path(p).expect("exists");
    assert_eq!(
        v.get(&path("q")).and_then(Value::to_f64_vec),
        Some(vec![1.5, -1.5])
    );
    assert_eq!(
        v.get(&path("signed")).and_then(Value::to_f64_vec),
        Some(vec![-1.0, 127.0])
    );
    assert_eq!(
        v.get(&path("flags")).and_then(Value::to_f64_vec),
        Some(vec![1.0, 0.0, 1.0])
    );
    assert_eq!(v.get(&path("names")).and_then(Value::to_f64_vec), None);
    assert_eq!(v.get(&path("f[1]")), Some(&Value::Int(-2)));
    assert_eq!(v.get(&path("q[5]")), None);
    assert_eq!(path("f").fixed_len(), Some(3));
    assert_eq!(path("q").fixed_len(), None);
    assert_eq!(path("f").ros_type(), "int32[3]");
    assert!(s.field_path("f[3]").is_err(), "index past a fixed array");
    assert!(
        s.field_path("small[0]").is_err(),
        "bytes are indexed by the caller"
    );
    assert_eq!(
        v.get(&path("big")).and_then(Value::as_bytes),
        Some(&big[..])
    );
    // Exactly 64 one-byte elements are still listed.
    let s64 = schema("test/B", "uint8[64] d\n");
    assert_eq!(golden(&s64, &[7; 64]), json!({"d": vec![7; 64]}));
}

#[test]
fn arrays_of_messages() {
    let def = format!(
        "Point[] pts\nPoint[2] pair\n{SEP}\nMSG: geometry_msgs/Point\nfloat64 x\nfloat64 y\nfloat64 z\n"
    );
    let s = schema("geometry_msgs/Polygonish", &def);
    let mut w = W::default().u32(2);
    for i in 0..4 {
        w = w.f64(i as f64).f64(0.5).f64(-0.5);
    }
    let v = s.decode(&w.0).expect("decodes");
    let p = |x: f64| json!({"x": x, "y": 0.5, "z": -0.5});
    assert_eq!(
        to_golden_json(&s, &v),
        json!({"pts": [p(0.0), p(1.0)], "pair": [p(2.0), p(3.0)]})
    );
    let path = s.field_path("pts[1].x").expect("exists");
    assert_eq!(v.get(&path), Some(&Value::Float64(1.0)));
    assert_eq!(
        s.decode_fields(&w.0, std::slice::from_ref(&path))
            .expect("decodes"),
        vec![Value::Float64(1.0)]
    );
    let beyond = s
        .field_path("pts[5].x")
        .expect("resolves; length is per message");
    assert!(s.decode_fields(&w.0, &[beyond]).is_err());
    assert!(s.field_path("pts.x").is_err(), "array needs an index");
}

#[test]
fn constants_are_not_data() {
    let def = "uint8 A = 1\nbool B=True\nstring S = a \"quoted\" #hash=not comment \\\n\
               int32 NEG=-5 # comment\nstring EMPTY=\nuint8 value # the only field\n\
               string T=x=y\n";
    let s = schema("test/Consts", def);
    assert_eq!(s.field_names().collect::<Vec<_>>(), vec!["value"]);
    assert_eq!(golden(&s, &[9]), json!({"value": 9}));
}

#[test]
fn constant_only_and_empty_definitions_decode_empty_payloads() {
    for def in ["", "\n\n", "# only a comment\n", "uint8 A=1\nstring S=#x\n"] {
        let s = schema("test/Empty", def);
        assert_eq!(s.decode(&[]).expect("0 bytes"), Value::Message(vec![]));
        assert_eq!(golden(&s, &[]), json!({}));
        let err = s.decode(&[0]).expect_err("1 byte too many");
        assert_eq!(err.offset, 0);
    }
}

#[test]
fn roslib_header_satisfies_header() {
    let def = format!(
        "Header header\nfloat32 temp\n{}",
        header_def("roslib/Header")
    );
    let s = schema("sensor_msgs/Temperature", &def);
    let data = W::default().header(1, 2, 3, "f").f32(20.5).0;
    assert_eq!(
        golden(&s, &data),
        json!({"header": {"seq": 1, "stamp": {"sec": 2, "nsec": 3}, "frame_id": "f"},
               "temp": 20.5})
    );
}

#[test]
fn bare_names_resolve_in_the_users_package() {
    // `Foo` inside pkg_a/Bar (itself a dependency) is pkg_a/Foo, not pkg_b/Foo.
    let def = format!(
        "pkg_a/Bar bar\nFoo foo\n{SEP}\nMSG: pkg_a/Bar\nFoo inner\n{SEP}\nMSG: pkg_b/Foo\nuint8 b\n\
         {SEP}\nMSG: pkg_a/Foo\nuint16 a\n"
    );
    let s = schema("pkg_b/Root", &def);
    let data = W::default().u16(513).u8(7).0;
    assert_eq!(
        golden(&s, &data),
        json!({"bar": {"inner": {"a": 513}}, "foo": {"b": 7}})
    );
}

#[test]
fn undefined_types_are_definition_errors() {
    let err = MessageSchema::parse("pkg/A", "Missing m\n").expect_err("undefined");
    assert!(err.what.contains("Missing"), "{err}");
    assert!(MessageSchema::parse("pkg/A", "other_pkg/B b\n").is_err());
}

#[test]
fn recursive_definitions_are_definition_errors() {
    let err = MessageSchema::parse("pkg/A", "A[] children\n").expect_err("self");
    assert!(err.what.contains("itself"), "{err}");
    let def = format!("B b\n{SEP}\nMSG: pkg/B\nC[] c\n{SEP}\nMSG: pkg/C\npkg/B b\n");
    assert!(MessageSchema::parse("pkg/A", &def).is_err());
    // A deep but finite chain beyond the limit is refused rather than overflowing the stack.
    let mut def = "T0 t\n".to_string();
    for i in 0..=MAX_NESTING_DEPTH + 1 {
        def += &format!("{SEP}\nMSG: pkg/T{i}\nT{} t\n", i + 1);
    }
    def += &format!("{SEP}\nMSG: pkg/T{}\nuint8 x\n", MAX_NESTING_DEPTH + 2);
    assert!(MessageSchema::parse("pkg/A", &def).is_err());
}

#[test]
fn shared_dependency_is_compiled_once() {
    let def = format!("P a\nP b\nP[] c\n{SEP}\nMSG: pkg/P\nint8 x\n");
    let s = schema("pkg/A", &def);
    assert_eq!(s.types.len(), 2);
    assert_eq!(
        golden(&s, &[1, 2, 1, 0, 0, 0, 3]),
        json!({"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}]})
    );
}

#[test]
fn short_payload_reports_offset_and_field() {
    let def = format!(
        "Header header\nfloat64[] q\nstring[] names\n{}",
        header_def("std_msgs/Header")
    );
    let s = schema("pkg/J", &def);
    // The element count is refused up front when the bytes left cannot hold it.
    let data = W::default()
        .header(1, 2, 3, "abc")
        .u32(2)
        .f64(1.0)
        .b(&[0; 3])
        .0;
    let err = s.decode(&data).expect_err("short");
    assert_eq!((err.offset, err.field.as_str()), (19 + 4, "q"));
    assert!(err.what.contains("field q:"), "{err}");
    assert_eq!(s.decode_fields(&data, &[]).expect_err("short"), err);
    // A string that runs past the end fails at its bytes, naming the element.
    let data = W::default()
        .header(1, 2, 3, "abc")
        .u32(0)
        .u32(2)
        .str("ab")
        .u32(10)
        .b(&[0; 3])
        .0;
    let err = s.decode(&data).expect_err("short");
    assert_eq!((err.offset, err.field.as_str()), (37, "names[1]"));
    assert_eq!(s.decode_fields(&data, &[]).expect_err("short"), err);
    let err = s.decode(&data[..10]).expect_err("short in header");
    assert_eq!((err.offset, err.field.as_str()), (8, "header.stamp"));
}

#[test]
fn long_payload_is_an_error() {
    let s = schema("std_msgs/Float64", "float64 data\n");
    let err = s.decode(&[0; 9]).expect_err("long");
    assert_eq!(err.offset, 8);
    assert!(s.decode_fields(&[0; 9], &[]).is_err());
}

#[test]
fn huge_length_prefixes_are_refused_before_allocating() {
    let big = 4_000_000_000u32;
    for def in [
        "uint8[] d",
        "float64[] d",
        "string d",
        "string[] d",
        "int8[] d",
    ] {
        let s = schema("pkg/H", def);
        let data = W::default().u32(big).b(&[0; 10]).0;
        let err = s.decode(&data).expect_err(def);
        assert_eq!(err.offset, 4, "{def}: {err}");
        assert!(s.decode_fields(&data, &[]).is_err());
    }
    // Elements with a variable part need at least their 4-byte prefixes.
    let def = format!("S[] d\n{SEP}\nMSG: pkg/S\nstring s\n");
    let s = schema("pkg/H", &def);
    assert!(s.decode(&W::default().u32(3).u32(0).u32(0).0).is_err());
    // Empty elements take no bytes, so their count is capped.
    let def = format!("E[] d\n{SEP}\nMSG: pkg/E\n");
    let s = schema("pkg/H", &def);
    assert!(s.decode(&W::default().u32(big).0).is_err());
    let limit = MAX_ZERO_SIZE_ARRAY_LEN as u32;
    assert!(s.decode(&W::default().u32(limit + 1).0).is_err());
    assert_eq!(golden(&s, &W::default().u32(2).0), json!({"d": [{}, {}]}));
    // A huge fixed array from the definition itself is also checked against the payload.
    let s = schema("pkg/H", "float64[1000000000000] d\n");
    assert!(s.decode(&[0; 16]).is_err());
}

#[test]
fn decode_fields_matches_decode() {
    let def = format!(
        "Header header\nstring[] name\nfloat64[] position\nInner[] inner\nInner one\n{}\
         {SEP}\nMSG: pkg/Inner\nstring s\nuint8[] b\nfloat32 f\n",
        header_def("std_msgs/Header")
    );
    let s = schema("pkg/JS", &def);
    let data = W::default()
        .header(1, 2, 3, "x")
        .u32(2)
        .str("j1")
        .str("j2")
        .u32(2)
        .f64(0.25)
        .f64(0.5)
        .u32(1)
        .str("in")
        .u32(2)
        .b(&[1, 2])
        .f32(1.5)
        .str("one")
        .u32(0)
        .f32(2.5)
        .0;
    let v = s.decode(&data).expect("decodes");
    let paths: Vec<FieldPath> = [
        "position",
        "header.stamp",
        "one.f",
        "inner[0].b",
        "name[1]",
        "one",
        "position[1]",
    ]
    .iter()
    .map(|p| s.field_path(p).expect("exists"))
    .collect();
    let expected: Vec<Value> = paths
        .iter()
        .map(|p| v.get(p).cloned().expect("present"))
        .collect();
    assert_eq!(s.decode_fields(&data, &paths).expect("decodes"), expected);
    assert!(v.heap_size() > 0);
}

#[test]
fn carriage_returns_and_ros2_bounds_are_tolerated() {
    let s = schema("pkg/R", "int32 a\r\nstring<=5 s\r\nint8[<=3] v\r\n");
    let data = W::default().i32(-1).str("ab").u32(1).i8(-2).0;
    assert_eq!(golden(&s, &data), json!({"a": -1, "s": "ab", "v": [-2]}));
}

/// CDR (ROS 2): alignment relative to the encapsulation header, either byte order, strings
/// with their NUL, wstring, bounded and fixed arrays, constants and default values (not on the
/// wire), the dummy byte of an empty type, padding bytes skipped unchecked.
#[test]
fn cdr_layouts_in_both_byte_orders() {
    let def = "uint8 A_CONST=7\nuint8 small\nfloat64 big\nstring<=10 name\nint32 answer 42\n\
               int16[3] fixed\nbyte[<=4] bounded\nwstring w\nEmpty e\nuint32 last\n\
               ================================================================================\n\
               MSG: pkg/msg/Empty\n";
    let schema = MessageSchema::parse_cdr("pkg/msg/T", def).expect("compiles");
    for be in [false, true] {
        let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let f64b = |v: f64| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut p: Vec<u8> = vec![0, if be { 0 } else { 1 }, 0, 0];
        p.push(5); // small, at offset 0
        p.extend([0xAA; 7]); // padding to 8 (garbage, not checked)
        p.extend(f64b(1.5)); // big
        p.extend(u32b(3)); // name: length with NUL
        p.extend(b"hi\0");
        p.push(0xEE); // pad to 4
        p.extend(u32b(42)); // answer
        for v in [1u16, 2, 0xFFFF] {
            p.extend(u16b(v)); // fixed int16[3]
        }
        p.extend([0; 2]); // pad to 4
        p.extend(u32b(2)); // bounded: 2 bytes
        p.extend([200, 7]);
        p.extend([0; 2]); // pad to 4
        p.extend(u32b(2)); // wstring: 2 characters of 4 bytes
        p.extend(u32b('é' as u32));
        p.extend(u32b('x' as u32));
        p.push(0); // e: the dummy byte of an empty type
        p.extend([0; 3]); // pad to 4
        p.extend(u32b(9)); // last
        let v = schema.decode(&p).expect("decodes");
        let json = crate::msg::to_golden_json(&schema, &v);
        assert_eq!(
            json,
            serde_json::json!({"small": 5, "big": 1.5, "name": "hi", "answer": 42,
                "fixed": [1, 2, -1], "bounded": [200, 7], "w": "éx", "e": {}, "last": 9}),
            "big endian: {be}"
        );
        // Up to 3 trailing pad bytes are accepted; more are an error.
        let mut padded = p.clone();
        padded.extend([0; 3]);
        assert!(schema.decode(&padded).is_ok());
        padded.push(0);
        assert!(schema.decode(&padded).is_err());
        // Every cut is an error, never a panic.
        for n in 0..p.len() {
            assert!(schema.decode(&p[..n]).is_err(), "cut at {n}");
        }
    }
    // Unsupported representations (XCDR2, parameter lists) are refused by name.
    let e = schema.decode(&[0, 7, 0, 0, 1]).unwrap_err();
    assert!(
        e.what.contains("unsupported CDR representation"),
        "{}",
        e.what
    );
}
