package ingest

import (
	"encoding/binary"

	"github.com/flowhound/flowhound/flow"
)

// NetFlow v9 (RFC 3954). FlowSets are walked by their length fields: the header count
// is advisory, since exporters disagree on what it counts (softflowd leaves templates
// out, some Cisco images count FlowSets) and trusting it loses the rest of the datagram.

const v9HeaderLen = 20

func (d *Decoder) decodeV9(ex *exporter, received int64, p []byte, dst []flow.Record) ([]flow.Record, error) {
	const proto = "v9"
	if len(p) < v9HeaderLen {
		return dst, d.fail(ex, proto, ReasonShort, "%d bytes, header needs %d", len(p), v9HeaderLen)
	}
	count := int(binary.BigEndian.Uint16(p[2:]))
	seq := binary.BigEndian.Uint32(p[12:])
	g := dgram{
		ex:        ex,
		dom:       ex.domain(flow.VersionNetFlow9, binary.BigEndian.Uint32(p[16:])),
		received:  received,
		exportNs:  int64(binary.BigEndian.Uint32(p[8:])) * 1e9,
		uptime:    binary.BigEndian.Uint32(p[4:]),
		hasUptime: true,
		version:   flow.VersionNetFlow9,
		proto:     proto,
	}
	ex.setSkew(g.exportNs, received)
	d.learned = false

	var err error
	records, before := 0, len(dst)
	countable := true // every record could be counted (no set parked or cut short)
	rest := p[v9HeaderLen:]
	for len(rest) > 0 {
		if len(rest) < 4 || binary.BigEndian.Uint16(rest[2:]) < 4 {
			if !allZero(rest) {
				err = firstErr(err, d.fail(ex, proto, ReasonBadSet, "flowset at offset %d: %d bytes left, set length %d",
					len(p)-len(rest), len(rest), setLen(rest)))
				countable = false
			}
			break // zero padding to the end of the datagram is common (Palo Alto)
		}
		id := binary.BigEndian.Uint16(rest)
		l := int(binary.BigEndian.Uint16(rest[2:]))
		if l > len(rest) {
			// Decode the records that fit, then stop: the set's end is unknown.
			err = firstErr(err, d.fail(ex, proto, ReasonTruncated, "flowset %d length %d, only %d bytes left", id, l, len(rest)))
			l = len(rest)
			countable = false
		}
		body := rest[4:l]
		rest = rest[l:]
		switch {
		case id == 0:
			n, e := d.v9Templates(ex, g.dom.key.id, body)
			records += n
			err = firstErr(err, e)
		case id == 1:
			n, e := d.v9OptionsTemplates(ex, g.dom.key.id, body)
			records += n
			err = firstErr(err, e)
		case id >= 256:
			var n int
			var e error
			dst, n, e = d.dataSet(&g, id, body, dst)
			err = firstErr(err, e)
			if n < 0 {
				countable = false
			} else {
				records += n
			}
		default:
			// FlowSet ids 2-255 are reserved: skip by length.
		}
	}
	if countable && records != count {
		ex.drops[ReasonCountMismatch]++
	}
	g.dom.seqDatagrams(seq, uint32(len(dst)-before))
	if d.learned && ex.npending > 0 {
		var e error
		dst, e = d.retryPending(ex, dst)
		err = firstErr(err, e)
	}
	return dst, err
}

func setLen(b []byte) int {
	if len(b) < 4 {
		return -1
	}
	return int(binary.BigEndian.Uint16(b[2:]))
}

// v9Templates learns the template records of a template FlowSet and returns how many
// it read.
func (d *Decoder) v9Templates(ex *exporter, domainID uint32, b []byte) (int, error) {
	var err error
	n := 0
	var specs [maxTemplateFields]fieldSpec
	for len(b) >= 4 {
		if binary.BigEndian.Uint32(b) == 0 && allZero(b) {
			break // padding
		}
		id, nf, _, used, e := v9TemplateRecord(b, false, &specs)
		if e != nil {
			ex.drops[ReasonBadTemplate]++
			return n, firstErr(err, e)
		}
		err = firstErr(err, d.learn(ex, "v9", tmplKey{flow.VersionNetFlow9, domainID, id}, false, b[:used], specs[:nf], 0))
		b = b[used:]
		n++
	}
	return n, err
}

// v9OptionsTemplates learns the options template records of an options template
// FlowSet.
func (d *Decoder) v9OptionsTemplates(ex *exporter, domainID uint32, b []byte) (int, error) {
	var err error
	n := 0
	var specs [maxTemplateFields]fieldSpec
	for len(b) >= 6 {
		if binary.BigEndian.Uint16(b) == 0 && allZero(b) {
			break // padding
		}
		id, nf, scope, used, e := v9TemplateRecord(b, true, &specs)
		if e != nil {
			ex.drops[ReasonBadTemplate]++
			return n, firstErr(err, e)
		}
		err = firstErr(err, d.learn(ex, "v9", tmplKey{flow.VersionNetFlow9, domainID, id}, true, b[:used], specs[:nf], scope))
		b = b[used:]
		n++
	}
	return n, err
}

// v9TemplateRecord reads the template record (options: options template record) at
// the start of b into specs. It returns the template id, the number of fields, the
// number of leading scope fields, and the record's length in bytes; or an error (not
// counted) when the record is refused. Decoding and LoadTemplates both read templates
// with it.
func v9TemplateRecord(b []byte, options bool, specs *[maxTemplateFields]fieldSpec) (id uint16, nf, scope, used int, err error) {
	if !options {
		if len(b) < 4 {
			return 0, 0, 0, 0, badTemplate("v9", "template record of %d bytes", len(b))
		}
		id = binary.BigEndian.Uint16(b)
		nf = int(binary.BigEndian.Uint16(b[2:]))
		if id < 256 {
			return 0, 0, 0, 0, badTemplate("v9", "template id %d (ids start at 256)", id)
		}
		if nf > maxTemplateFields {
			return 0, 0, 0, 0, badTemplate("v9", "template %d has %d fields (at most %d)", id, nf, maxTemplateFields)
		}
		if nf == 0 {
			return 0, 0, 0, 0, badTemplate("v9", "template %d has no fields", id)
		}
		if len(b) < 4+4*nf {
			return 0, 0, 0, 0, badTemplate("v9", "template %d: %d fields need %d bytes, %d left", id, nf, 4+4*nf, len(b))
		}
		used = 4
	} else {
		if len(b) < 6 {
			return 0, 0, 0, 0, badTemplate("v9", "options template record of %d bytes", len(b))
		}
		id = binary.BigEndian.Uint16(b)
		scopeLen := int(binary.BigEndian.Uint16(b[2:]))
		optLen := int(binary.BigEndian.Uint16(b[4:]))
		if id < 256 {
			return 0, 0, 0, 0, badTemplate("v9", "options template id %d (ids start at 256)", id)
		}
		if scopeLen%4 != 0 || optLen%4 != 0 {
			return 0, 0, 0, 0, badTemplate("v9", "options template %d: scope length %d, option length %d (multiples of 4)", id, scopeLen, optLen)
		}
		nf = (scopeLen + optLen) / 4
		if nf == 0 || nf > maxTemplateFields {
			return 0, 0, 0, 0, badTemplate("v9", "options template %d has %d fields", id, nf)
		}
		if len(b) < 6+4*nf {
			return 0, 0, 0, 0, badTemplate("v9", "options template %d: %d fields need %d bytes, %d left", id, nf, 6+4*nf, len(b))
		}
		scope, used = scopeLen/4, 6
	}
	for i := 0; i < nf; i++ {
		f := b[used+4*i:]
		specs[i] = fieldSpec{typ: binary.BigEndian.Uint16(f), len: binary.BigEndian.Uint16(f[2:])}
	}
	return id, nf, scope, used + 4*nf, nil
}
