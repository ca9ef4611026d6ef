//! The value reader (`dump --locals`) on synthetic memory: what it shows for objects a real
//! interpreter would not hold (bad pointers, lying sizes, deep or cyclic graphs, impostor
//! types). Each value must come out bounded, and a bad part must not spoil the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use strobe_python_abi::{layout_for, Flavour, Layout};
use strobe_testkit::ImageMemory;
use strobe_walker::value::{ValueReader, MAX_ITEMS, MAX_REPR};

struct Image {
    mem: ImageMemory,
    l: Layout,
}

impl Image {
    fn new(major: u8, minor: u8) -> Image {
        Image {
            mem: ImageMemory::new(),
            l: *layout_for(major, minor, Flavour::DEFAULT).unwrap(),
        }
    }

    fn ty(&mut self, name: &str, heap: bool) -> u64 {
        let cname = self.mem.alloc(name.len() + 1);
        self.mem.write(cname, name.as_bytes());
        let ty = self.mem.alloc(1024);
        self.mem.write_u64(ty + u64::from(self.l.type_name), cname);
        let flags = if heap {
            u64::from(self.l.tpflags_heaptype)
        } else {
            0
        };
        self.mem.write_u64(ty + u64::from(self.l.type_flags), flags);
        ty
    }

    fn obj(&mut self, ty: u64, size: usize) -> u64 {
        let o = self.mem.alloc(size.max(64));
        self.mem
            .write_u64(o + u64::from(self.l.pyobject_ob_type), ty);
        o
    }

    /// A 3.12 `int` of the given 30-bit digits.
    fn int(&mut self, digits: &[u32]) -> u64 {
        let ty = self.ty("int", false);
        let o = self.obj(ty, self.l.long_digit as usize + 4 * digits.len() + 8);
        self.mem.write_u64(
            o + u64::from(self.l.long_lv_tag.unwrap()),
            (digits.len() as u64) << 3,
        );
        for (i, &d) in digits.iter().enumerate() {
            self.mem
                .write_u32(o + u64::from(self.l.long_digit) + 4 * i as u64, d);
        }
        o
    }

    /// A list of `items` claiming `size` items and `allocated` slots.
    fn list(&mut self, items: &[u64], size: u64, allocated: u64) -> u64 {
        let ty = self.ty("list", false);
        let o = self.obj(ty, 64);
        let array = self.mem.alloc(8 * items.len().max(1));
        for (i, &item) in items.iter().enumerate() {
            self.mem.write_u64(array + 8 * i as u64, item);
        }
        self.mem
            .write_u64(o + u64::from(self.l.pyvarobject_ob_size), size);
        self.mem
            .write_u64(o + u64::from(self.l.list_allocated), allocated);
        self.mem
            .write_u64(o + u64::from(self.l.list_ob_item), array);
        o
    }

    fn repr(&self, obj: u64) -> (String, bool) {
        let v = ValueReader::new(&self.mem, &self.l).repr(obj);
        (v.repr, v.truncated)
    }
}

#[test]
fn a_bad_item_is_unreadable_and_the_rest_is_shown() {
    let mut im = Image::new(3, 12);
    let one = im.int(&[1]);
    let three = im.int(&[3]);
    let list = im.list(&[one, 0xdead_0000, three, 0], 4, 4);
    assert_eq!(
        im.repr(list),
        ("[1, <unreadable>, 3, <unreadable>]".to_string(), false)
    );
}

#[test]
fn a_list_claiming_more_items_than_it_allocated_is_unreadable() {
    let mut im = Image::new(3, 12);
    let one = im.int(&[1]);
    let list = im.list(&[one], 1 << 30, 1);
    assert_eq!(im.repr(list), ("<unreadable>".to_string(), false));
    // A huge list whose sizes agree: the first items, then the count, never more reads.
    let list = im.list(&[one; 12], 1 << 30, 1 << 30);
    let want = format!(
        "[{}, ...] ({} items)",
        ["1"; MAX_ITEMS].join(", "),
        1u64 << 30
    );
    assert_eq!(im.repr(list), (want, true));
}

#[test]
fn an_int_too_large_to_convert_is_shown_by_its_size() {
    let mut im = Image::new(3, 12);
    let big = im.int(&vec![1; 5000]);
    assert_eq!(
        im.repr(big),
        ("<int of about 150000 bits>".to_string(), true)
    );
    // A digit with bits above the 30 a digit holds is garbage.
    let bad = im.int(&[1 << 31]);
    assert_eq!(im.repr(bad), ("<unreadable>".to_string(), false));
}

#[test]
fn a_class_named_like_a_builtin_is_not_decoded_as_one() {
    let mut im = Image::new(3, 12);
    let impostor = im.ty("int", true);
    let o = im.obj(impostor, 64);
    // Its "digits" would read as 12345 if it were taken for an int.
    im.mem
        .write_u64(o + u64::from(im.l.long_lv_tag.unwrap()), 1 << 3);
    im.mem.write_u32(o + u64::from(im.l.long_digit), 12345);
    assert_eq!(im.repr(o), (format!("<int object at {o:#x}>"), false));
}

#[test]
fn cycles_and_deep_nesting_stay_bounded() {
    let mut im = Image::new(3, 12);
    // a = [b], b = [a]: Python prints [[[...]]].
    let a = im.list(&[0], 1, 1);
    let b = im.list(&[a], 1, 1);
    let array = im.mem.read_u64_at(a + u64::from(im.l.list_ob_item));
    im.mem.write_u64(array, b);
    assert_eq!(im.repr(a), ("[[[...]]]".to_string(), false));
    // A chain of 1000 nested lists: three levels, then [...].
    let mut inner = im.int(&[7]);
    for _ in 0..1000 {
        inner = im.list(&[inner], 1, 1);
    }
    assert_eq!(im.repr(inner), ("[[[[...]]]]".to_string(), true));
    // A list holding itself a thousand times: ten items shown, the repr within its bound.
    let me = im.list(&[0; 1000], 1000, 1000);
    let array = im.mem.read_u64_at(me + u64::from(im.l.list_ob_item));
    for i in 0..1000 {
        im.mem.write_u64(array + 8 * i, me);
    }
    let (repr, truncated) = im.repr(me);
    assert!(truncated);
    assert!(repr.len() <= MAX_REPR, "{repr}");
    assert!(repr.starts_with("[[...], [...], "), "{repr}");
    assert!(repr.ends_with(", ...] (1000 items)"), "{repr}");
}

#[test]
fn python_2_ints_and_longs() {
    let mut im = Image::new(2, 7);
    let ty = im.ty("int", false);
    let small = im.obj(ty, 64);
    im.mem
        .write_u64(small + u64::from(im.l.long_digit), (-5i64) as u64);
    assert_eq!(im.repr(small), ("-5".to_string(), false));
    let ty = im.ty("long", false);
    let long = im.obj(ty, 64);
    // -(2**30 + 2): two digits, negative size.
    im.mem
        .write_u64(long + u64::from(im.l.pyvarobject_ob_size), (-2i64) as u64);
    let digits = long + u64::from(im.l.long27_digit.unwrap());
    im.mem.write_u32(digits, 2);
    im.mem.write_u32(digits + 4, 1);
    assert_eq!(im.repr(long), ("-1073741826L".to_string(), false));
}

/// Reading a pointer back from the image.
trait ReadBack {
    fn read_u64_at(&self, addr: u64) -> u64;
}

impl ReadBack for ImageMemory {
    fn read_u64_at(&self, addr: u64) -> u64 {
        use strobe_memory::RemoteMemory;
        self.read_u64(addr).unwrap()
    }
}
