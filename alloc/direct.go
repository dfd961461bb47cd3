package alloc

import "unsafe"

// AlignedBuffer returns a zeroed buffer of n bytes whose address is a
// multiple of DirectAlign, as O_DIRECT needs. Its capacity is n, so appends
// reallocate (and lose the alignment).
func AlignedBuffer(n int) []byte {
	if n <= 0 {
		return nil
	}
	b := make([]byte, n+DirectAlign)
	o := int(uintptr(unsafe.Pointer(&b[0])) & (DirectAlign - 1))
	if o != 0 {
		o = DirectAlign - o
	}
	return b[o : o+n : o+n]
}

// isAligned reports whether p at off can go to an O_DIRECT file as is.
func isAligned(p []byte, off int64) bool {
	if off%DirectAlign != 0 || len(p)%DirectAlign != 0 {
		return false
	}
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))&(DirectAlign-1) == 0
}
