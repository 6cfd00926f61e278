package ingest

import (
	"encoding/binary"

	"github.com/flowhound/flowhound/flow"
)

// IPFIX (RFC 7011) over UDP. Enterprise-specific fields (including RFC 5103 reverse
// fields, PEN 29305) are skipped by length; variable-length fields make the record
// length differ per record, which the template code handles on a slower path.

const ipfixHeaderLen = 16

func (d *Decoder) decodeIPFIX(ex *exporter, received int64, p []byte, dst []flow.Record) ([]flow.Record, error) {
	const proto = "ipfix"
	if len(p) < ipfixHeaderLen {
		return dst, d.fail(ex, proto, ReasonShort, "%d bytes, header needs %d", len(p), ipfixHeaderLen)
	}
	var err error
	// Sets are read up to the message length the header gives, but a set that starts
	// before that end and runs past it into the rest of the datagram is still read:
	// telegraf issue 14370 shows an exporter whose header length is 2 bytes short of
	// its sets. Bytes after the sets are ignored (counted as a quirk).
	end := int(binary.BigEndian.Uint16(p[2:]))
	switch {
	case end < ipfixHeaderLen:
		return dst, d.fail(ex, proto, ReasonBadHeader, "message length %d, shorter than its header", end)
	case end > len(p):
		err = d.fail(ex, proto, ReasonTruncated, "message length %d, datagram has %d bytes", end, len(p))
		end = len(p)
	case end < len(p):
		ex.drops[ReasonLength]++
	}
	seq := binary.BigEndian.Uint32(p[8:])
	g := dgram{
		ex:       ex,
		dom:      ex.domain(flow.VersionIPFIX, binary.BigEndian.Uint32(p[12:])),
		received: received,
		exportNs: int64(binary.BigEndian.Uint32(p[4:])) * 1e9,
		version:  flow.VersionIPFIX,
		proto:    proto,
	}
	ex.setSkew(g.exportNs, received)
	d.learned = false

	records := 0 // data records, options data included: what the sequence number counts
	countable := err == nil
	rest := p[ipfixHeaderLen:]
	for len(p)-len(rest) < end {
		if len(rest) < 4 || binary.BigEndian.Uint16(rest[2:]) < 4 {
			if !allZero(rest[:min(len(rest), end-(len(p)-len(rest)))]) {
				err = firstErr(err, d.fail(ex, proto, ReasonBadSet, "set at offset %d: %d bytes left, set length %d",
					len(p)-len(rest), len(rest), setLen(rest)))
				countable = false
			}
			break
		}
		id := binary.BigEndian.Uint16(rest)
		l := int(binary.BigEndian.Uint16(rest[2:]))
		if l > len(rest) {
			err = firstErr(err, d.fail(ex, proto, ReasonTruncated, "set %d length %d, only %d bytes left", id, l, len(rest)))
			l = len(rest)
			countable = false
		}
		body := rest[4:l]
		rest = rest[l:]
		switch {
		case id == 2:
			err = firstErr(err, d.ipfixTemplates(ex, g.dom.key.id, body, false))
		case id == 3:
			err = firstErr(err, d.ipfixTemplates(ex, g.dom.key.id, body, true))
		case id >= 256:
			g.ipfixUptime() // options data earlier in this message may have brought it
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
			// Set ids 0-1 (NetFlow v9's) and 4-255 are reserved: skip by length.
		}
	}
	if countable {
		g.dom.seqFlows(seq, uint32(records))
	} else {
		// The number of records in this message is unknown, so the next sequence
		// number cannot be predicted: count the gap up to here, then resynchronise.
		g.dom.lostFlows += uint64(g.dom.sequence(seq))
		g.dom.datagrams++
		g.dom.seqOK = false
	}
	if d.learned && ex.npending > 0 {
		var e error
		dst, e = d.retryPending(ex, dst)
		err = firstErr(err, e)
	}
	return dst, err
}

// ipfixUptime derives the uptime at export from the domain's systemInitTimeMilliseconds
// so that sysUpTime-relative fields (21/22) convert as in v9.
func (g *dgram) ipfixUptime() {
	if g.dom.sysInitMs > 0 {
		g.uptime = uint32(g.exportNs/1e6 - g.dom.sysInitMs)
		g.hasUptime = true
	} else {
		g.hasUptime = false
	}
}

// ipfixTemplates learns the records of a template set (options: an options template
// set) and handles template withdrawals.
func (d *Decoder) ipfixTemplates(ex *exporter, domainID uint32, b []byte, options bool) error {
	var err error
	var specs [maxTemplateFields]fieldSpec
	for len(b) >= 4 {
		id := binary.BigEndian.Uint16(b)
		nf := int(binary.BigEndian.Uint16(b[2:]))
		if id == 0 && nf == 0 && allZero(b) {
			break // padding
		}
		if nf == 0 {
			if id >= 256 {
				d.withdraw(ex, tmplKey{flow.VersionIPFIX, domainID, id})
			}
			b = b[4:]
			continue
		}
		id, nf, scope, used, e := ipfixTemplateRecord(b, options, &specs)
		if e != nil {
			ex.drops[ReasonBadTemplate]++
			return firstErr(err, e)
		}
		err = firstErr(err, d.learn(ex, "ipfix", tmplKey{flow.VersionIPFIX, domainID, id}, options, b[:used], specs[:nf], scope))
		b = b[used:]
	}
	return err
}

// ipfixTemplateRecord reads the template record (options: options template record) at
// the start of b into specs. It returns the template id, the number of fields, the
// number of leading scope fields, and the record's length in bytes; or an error (not
// counted) when the record is refused. A withdrawal (no fields) is refused: the caller
// handles those. Decoding and LoadTemplates both read templates with it.
func ipfixTemplateRecord(b []byte, options bool, specs *[maxTemplateFields]fieldSpec) (id uint16, nf, scope, used int, err error) {
	const proto = "ipfix"
	if len(b) < 4 {
		return 0, 0, 0, 0, badTemplate(proto, "template record of %d bytes", len(b))
	}
	id = binary.BigEndian.Uint16(b)
	nf = int(binary.BigEndian.Uint16(b[2:]))
	if id < 256 {
		return 0, 0, 0, 0, badTemplate(proto, "template id %d (ids start at 256)", id)
	}
	if nf > maxTemplateFields {
		return 0, 0, 0, 0, badTemplate(proto, "template %d has %d fields (at most %d)", id, nf, maxTemplateFields)
	}
	if nf == 0 {
		return 0, 0, 0, 0, badTemplate(proto, "template %d has no fields (a withdrawal)", id)
	}
	p := 4
	if options {
		if len(b) < 6 {
			return 0, 0, 0, 0, badTemplate(proto, "options template %d: header cut short", id)
		}
		scope = int(binary.BigEndian.Uint16(b[4:]))
		if scope == 0 || scope > nf {
			return 0, 0, 0, 0, badTemplate(proto, "options template %d: scope field count %d of %d fields", id, scope, nf)
		}
		p = 6
	}
	for i := 0; i < nf; i++ {
		if len(b) < p+4 {
			return 0, 0, 0, 0, badTemplate(proto, "template %d: field %d cut short", id, i+1)
		}
		typ := binary.BigEndian.Uint16(b[p:])
		f := fieldSpec{typ: typ & 0x7FFF, len: binary.BigEndian.Uint16(b[p+2:])}
		p += 4
		if typ&0x8000 != 0 {
			if len(b) < p+4 {
				return 0, 0, 0, 0, badTemplate(proto, "template %d: field %d enterprise number cut short", id, i+1)
			}
			f.pen = binary.BigEndian.Uint32(b[p:])
			p += 4
		}
		specs[i] = f
	}
	return id, nf, scope, p, nil
}
