package ingest

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"

	"github.com/flowhound/flowhound/flow"
)

// Templates that survive a restart. Over UDP, an exporter re-sends its v9/IPFIX
// templates only every few seconds to minutes, and until they come again a restarted
// collector cannot decode (it parks, then drops) the data. SaveTemplates writes what
// the Decoder knows about its exporters' templates to a blob that the caller stores;
// LoadTemplates gives it back to a new Decoder at start.
//
// The blob keeps each template as the record the exporter sent, with its key, and is
// read back through the same template parsers as datagrams: there is no second parser
// to keep in step. Besides templates it keeps what options data said about each v9/
// IPFIX observation domain (sampling rate, per-sampler rates, system init time), so
// that sampled data is scaled and relative times are placed from the first datagram.
// Sequence numbers and counters are not kept: losses during the restart are not the
// exporter's.
//
// Blob format (version 1). Integers are big-endian; uvarint and varint are those of
// encoding/binary.
//
//	blob     = "FHTP" format:u8=1 nexporters:uvarint exporter* crc:u32
//	exporter = alen:uvarint addr:alen lastseen:varint
//	           ntemplates:uvarint template* ndomains:uvarint domain*
//	template = version:u8(9|10) flags:u8(bit 0: options) domain:u32 id:u16
//	           learned:varint rlen:uvarint record:rlen
//	domain   = version:u8(9|10) domain:u32 rate:u32 sysinit:varint
//	           nsamplers:uvarint (sampler:uvarint rate:u32)*
//
// crc is the CRC-32C (Castagnoli) of everything before it. addr is the exporter's
// address as netip.Addr.MarshalBinary writes it (4 bytes, 16, or 16 and an IPv6 zone
// name); exporters without an address are not written. record is the template
// record as the exporter sent it (v9: id, field count, fields; v9 options: id, scope
// and option lengths, fields; IPFIX: id, field count, [scope field count,] fields with
// enterprise numbers); its id must be the one of the key. lastseen and learned are
// arrival times (Unix ns) of the exporter's latest datagram and of the datagram that
// brought the template's current shape. rate is the domain-wide sampling rate, sysinit
// systemInitTimeMilliseconds (0: unknown). Exporters are written in address order,
// templates and domains in key order, so that the same state gives the same bytes.

// Errors of LoadTemplates.
var (
	// ErrTemplateBlob is wrapped by the error for a blob that is not a valid template
	// blob (foreign, corrupt, truncated or of an unknown format version). Nothing of it
	// was loaded.
	ErrTemplateBlob = errors.New("ingest: invalid template blob")
	// ErrTemplatesSkipped is wrapped by the error for a valid blob that did not fit the
	// Decoder's bounds (MaxExporters, MaxTemplates, MaxTemplatesTotal, and the domains
	// kept per exporter). What fitted was loaded.
	ErrTemplatesSkipped = errors.New("ingest: templates skipped")
)

const (
	blobMagic   = "FHTP"
	blobFormat  = 1
	blobHeadLen = len(blobMagic) + 1
	blobCRCLen  = 4
	flagOptions = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SaveTemplates returns a snapshot of every v9/IPFIX template the Decoder holds, with
// the sampling state learned from options data, as a blob for LoadTemplates. changed
// reports whether any of it changed since the previous SaveTemplates (or since a
// LoadTemplates that restored a blob in full), so that a caller saving periodically
// can skip unchanged snapshots; the blob is complete either way. A Decoder without
// templates gives a valid blob that loads nothing.
//
// Templates withdrawn by their exporter, refused, or forgotten with an idle exporter
// are not in the blob. The Decoder's lock is held only while the state is gathered,
// not while the blob is written.
func (d *Decoder) SaveTemplates() (changed bool, blob []byte) {
	d.mu.Lock()
	changed = d.saveGen != d.savedGen
	d.savedGen = d.saveGen
	snap := make([]savedExporter, 0, len(d.exporters))
	size := blobHeadLen + blobCRCLen + binary.MaxVarintLen64
	for _, ex := range d.exporters {
		a, _ := ex.addr.MarshalBinary()
		if !ex.addr.IsValid() || len(a) > maxAddrLen {
			// Only a caller passing the zero Addr, or one with an absurd zone name,
			// to Decode makes such an exporter.
			continue
		}
		se := savedExporter{addr: ex.addr, bin: a, lastSeen: ex.lastSeen}
		if len(ex.templates) > 0 {
			se.templates = make([]*template, 0, len(ex.templates))
			for _, t := range ex.templates {
				// A template is never modified once stored (a change stores a new
				// one), so its pointer can be read after the lock is released.
				se.templates = append(se.templates, t)
				size += 32 + len(t.raw)
			}
		}
		for _, dm := range ex.domains {
			if dm.saved() {
				se.domains = append(se.domains, savedDomain{key: dm.key, rate: dm.rate,
					sysInitMs: max(dm.sysInitMs, 0), samplers: slices.Clone(dm.samplers)})
				size += 32 + 16*len(dm.samplers)
			}
		}
		if len(se.templates) > 0 || len(se.domains) > 0 {
			snap = append(snap, se)
			size += 48
		}
	}
	d.mu.Unlock()

	slices.SortFunc(snap, func(a, b savedExporter) int { return a.addr.Compare(b.addr) })
	b := make([]byte, 0, size)
	b = append(b, blobMagic...)
	b = append(b, blobFormat)
	b = binary.AppendUvarint(b, uint64(len(snap)))
	for i := range snap {
		se := &snap[i]
		slices.SortFunc(se.templates, func(x, y *template) int { return cmpKey(x.key, y.key) })
		slices.SortFunc(se.domains, func(x, y savedDomain) int {
			return cmp.Or(cmp.Compare(x.key.version, y.key.version), cmp.Compare(x.key.id, y.key.id))
		})
		b = binary.AppendUvarint(b, uint64(len(se.bin)))
		b = append(b, se.bin...)
		b = binary.AppendVarint(b, se.lastSeen)
		b = binary.AppendUvarint(b, uint64(len(se.templates)))
		for _, t := range se.templates {
			var flags byte
			if t.options {
				flags |= flagOptions
			}
			b = append(b, t.key.version, flags)
			b = binary.BigEndian.AppendUint32(b, t.key.domain)
			b = binary.BigEndian.AppendUint16(b, t.key.id)
			b = binary.AppendVarint(b, t.learnedAt)
			b = binary.AppendUvarint(b, uint64(len(t.raw)))
			b = append(b, t.raw...)
		}
		b = binary.AppendUvarint(b, uint64(len(se.domains)))
		for _, sd := range se.domains {
			b = append(b, sd.key.version)
			b = binary.BigEndian.AppendUint32(b, sd.key.id)
			b = binary.BigEndian.AppendUint32(b, sd.rate)
			b = binary.AppendVarint(b, sd.sysInitMs)
			b = binary.AppendUvarint(b, uint64(len(sd.samplers)))
			for _, s := range sd.samplers {
				b = binary.AppendUvarint(b, s.id)
				b = binary.BigEndian.AppendUint32(b, s.rate)
			}
		}
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return changed, b
}

// TemplatesChanged reports whether SaveTemplates would now say changed, without
// building the blob.
func (d *Decoder) TemplatesChanged() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.saveGen != d.savedGen
}

// LoadTemplates restores the templates and sampling state of a blob from
// SaveTemplates, so that data from the exporters in it decodes before they send their
// templates again. Call it at start, before the first Decode: data sets parked before
// it wait for the next template that arrives. An empty blob (nothing stored yet)
// loads nothing and is no error.
//
// The whole blob is checked before anything is loaded; an error wrapping
// ErrTemplateBlob means it was refused and the Decoder is unchanged. Templates go
// through the same checks as those from datagrams, and the DecoderConfig bounds
// apply: exporters beyond MaxExporters, and templates beyond MaxTemplates or
// MaxTemplatesTotal, are skipped (the latter counted as template_limit drops of their
// exporter), and the error then wraps ErrTemplatesSkipped while the rest is loaded.
// A template or sampling value the Decoder already holds is kept: what an exporter
// sent is newer than the blob. Exporters created here start with their saved
// LastSeen and no counters.
func (d *Decoder) LoadTemplates(blob []byte) error {
	if len(blob) == 0 {
		return nil
	}
	body, err := blobBody(blob)
	if err != nil {
		return err
	}
	// First pass: check everything, load nothing.
	if err := walkBlob(body, nil); err != nil {
		return fmt.Errorf("%w: %v", ErrTemplateBlob, err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	clean := d.saveGen == d.savedGen
	var ld loader
	if err := walkBlob(body, func(se *savedExporter) { ld.apply(d, se) }); err != nil {
		// Cannot happen: the same bytes passed the first pass.
		return fmt.Errorf("%w: %v", ErrTemplateBlob, err)
	}
	d.learned = false
	if ld.skippedTemplates == 0 && ld.skippedExporters == 0 && ld.skippedDomains == 0 {
		if clean {
			d.savedGen = d.saveGen // the Decoder now holds what the store holds
		}
		return nil
	}
	return fmt.Errorf("%w: %d of %d templates and %d of %d sampling domains did not fit (%d exporters beyond MaxExporters)",
		ErrTemplatesSkipped, ld.skippedTemplates, ld.templates, ld.skippedDomains, ld.domains, ld.skippedExporters)
}

// savedExporter is what a blob holds of one exporter.
type savedExporter struct {
	addr      netip.Addr
	bin       []byte // addr as written (SaveTemplates only)
	lastSeen  int64
	templates []*template
	domains   []savedDomain
}

type savedDomain struct {
	key       domKey
	rate      uint32
	sysInitMs int64
	samplers  []sampler
}

// saved reports whether a domain holds state that SaveTemplates keeps.
func (dm *domain) saved() bool {
	// A negative init time (a corrupt 64-bit field) is one decoding ignores.
	return (dm.key.version == flow.VersionNetFlow9 || dm.key.version == flow.VersionIPFIX) &&
		(dm.rate != 0 || dm.sysInitMs > 0 || len(dm.samplers) > 0)
}

func (ex *exporter) hasSavedDomains() bool {
	for _, dm := range ex.domains {
		if dm.saved() {
			return true
		}
	}
	return false
}

func (dm *domain) hasSampler(id uint64) bool {
	for i := range dm.samplers {
		if dm.samplers[i].id == id {
			return true
		}
	}
	return false
}

func cmpKey(a, b tmplKey) int {
	return cmp.Or(cmp.Compare(a.version, b.version), cmp.Compare(a.domain, b.domain), cmp.Compare(a.id, b.id))
}

// blobBody checks a blob's magic, format version and checksum and returns what lies
// between header and checksum.
func blobBody(blob []byte) ([]byte, error) {
	if len(blob) < blobHeadLen+blobCRCLen || string(blob[:len(blobMagic)]) != blobMagic {
		return nil, fmt.Errorf("%w: %d bytes that are not a flowhound template blob", ErrTemplateBlob, len(blob))
	}
	if v := blob[len(blobMagic)]; v != blobFormat {
		return nil, fmt.Errorf("%w: format version %d (this build reads %d)", ErrTemplateBlob, v, blobFormat)
	}
	n := len(blob) - blobCRCLen
	if got, want := crc32.Checksum(blob[:n], castagnoli), binary.BigEndian.Uint32(blob[n:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, computed %08x: corrupt", ErrTemplateBlob, want, got)
	}
	return blob[blobHeadLen:n], nil
}

// blobReader reads the fields of a blob; the first read past the end sets short and
// every later read returns zero.
type blobReader struct {
	b     []byte
	short bool
}

func (r *blobReader) take(n int) []byte {
	if r.short || n < 0 || n > len(r.b) {
		r.short = true
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *blobReader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *blobReader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *blobReader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *blobReader) uvarint() uint64 {
	if r.short {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.short = true
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *blobReader) varint() int64 {
	if r.short {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.short = true
		return 0
	}
	r.b = r.b[n:]
	return x
}

// count reads a count of items of at least min bytes each, refusing one that the
// bytes left cannot hold (so that no loop runs, and nothing is sized, on a count a
// corrupt blob declares).
func (r *blobReader) count(min int) (int, bool) {
	n := r.uvarint()
	if r.short || n > uint64(len(r.b)/min) {
		return 0, false
	}
	return int(n), true
}

// Smallest encodings, for count; the longest address (an IPv6 one with a zone name).
const (
	maxAddrLen     = 16 + 64
	minExporterLen = 1 + 4 + 1 + 1 + 1
	minTemplateLen = 1 + 1 + 4 + 2 + 1 + 1 + 4
	minDomainLen   = 1 + 4 + 4 + 1 + 1
	minSamplerLen  = 1 + 4
)

// walkBlob reads a blob body, calling fn (when not nil) with each exporter in it. The
// templates it passes are parsed from their records and compiled, and every value is
// checked; the first problem ends the walk with an error.
func walkBlob(body []byte, fn func(*savedExporter)) error {
	r := &blobReader{b: body}
	nex, ok := r.count(minExporterLen)
	if !ok {
		return errors.New("exporter count cut short or too large")
	}
	var se savedExporter
	var specs [maxTemplateFields]fieldSpec
	for i := 0; i < nex; i++ {
		se = savedExporter{templates: se.templates[:0], domains: se.domains[:0]}
		alen := r.uvarint()
		if alen > maxAddrLen {
			return fmt.Errorf("exporter %d: address of %d bytes", i+1, alen)
		}
		a := r.take(int(alen))
		if r.short {
			return fmt.Errorf("exporter %d cut short", i+1)
		}
		if err := se.addr.UnmarshalBinary(a); err != nil || !se.addr.IsValid() {
			return fmt.Errorf("exporter %d: address of %d bytes", i+1, alen)
		}
		se.addr = se.addr.Unmap() // as Decode keys exporters
		se.lastSeen = r.varint()
		nt, ok := r.count(minTemplateLen)
		if !ok {
			return fmt.Errorf("exporter %v: template count cut short or too large", se.addr)
		}
		for j := 0; j < nt; j++ {
			version, flags := r.u8(), r.u8()
			key := tmplKey{version: version, domain: r.u32(), id: r.u16()}
			learned := r.varint()
			rlen := r.uvarint()
			if rlen > uint64(len(r.b)) {
				r.short = true
			}
			raw := r.take(int(rlen))
			if r.short {
				return fmt.Errorf("exporter %v: template %d cut short", se.addr, j+1)
			}
			if flags&^flagOptions != 0 {
				return fmt.Errorf("exporter %v: template %d: unknown flags %#x", se.addr, key.id, flags)
			}
			options := flags&flagOptions != 0
			var (
				id            uint16
				nf, scope, n  int
				err           error
				proto, family string
			)
			switch version {
			case flow.VersionNetFlow9:
				proto, family = "v9", "v9"
				id, nf, scope, n, err = v9TemplateRecord(raw, options, &specs)
			case flow.VersionIPFIX:
				proto, family = "ipfix", "IPFIX"
				id, nf, scope, n, err = ipfixTemplateRecord(raw, options, &specs)
			default:
				return fmt.Errorf("exporter %v: template %d of version %d (v9 and IPFIX only)", se.addr, key.id, version)
			}
			if err != nil {
				return fmt.Errorf("exporter %v: %s template %d/%d: %s", se.addr, family, key.domain, key.id, detail(err))
			}
			if id != key.id || n != len(raw) {
				return fmt.Errorf("exporter %v: %s template %d/%d: record of %d bytes holds template %d of %d bytes",
					se.addr, family, key.domain, key.id, len(raw), id, n)
			}
			t, _, refuse := newTemplate(proto, key, options, raw, specs[:nf], scope)
			if refuse != nil {
				return fmt.Errorf("exporter %v: %s template %d/%d: %s", se.addr, family, key.domain, key.id, detail(refuse))
			}
			t.learnedAt = learned
			se.templates = append(se.templates, t)
		}
		nd, ok := r.count(minDomainLen)
		if !ok || nd > maxDomains {
			return fmt.Errorf("exporter %v: domain count cut short or too large", se.addr)
		}
		for j := 0; j < nd; j++ {
			sd := savedDomain{key: domKey{version: r.u8(), id: r.u32()}, rate: r.u32(), sysInitMs: r.varint()}
			ns, ok := r.count(minSamplerLen)
			if r.short || !ok {
				return fmt.Errorf("exporter %v: domain %d cut short", se.addr, j+1)
			}
			if sd.key.version != flow.VersionNetFlow9 && sd.key.version != flow.VersionIPFIX {
				return fmt.Errorf("exporter %v: domain %d of version %d (v9 and IPFIX only)", se.addr, sd.key.id, sd.key.version)
			}
			if sd.rate > maxSamplingRate || sd.sysInitMs < 0 || ns > maxSamplers {
				return fmt.Errorf("exporter %v: domain %d: rate %d, init time %d, %d samplers", se.addr, sd.key.id, sd.rate, sd.sysInitMs, ns)
			}
			for k := 0; k < ns; k++ {
				s := sampler{id: r.uvarint(), rate: r.u32()}
				if r.short {
					return fmt.Errorf("exporter %v: domain %d cut short", se.addr, sd.key.id)
				}
				if s.rate == 0 || s.rate > maxSamplingRate {
					return fmt.Errorf("exporter %v: domain %d: sampler %d rate %d", se.addr, sd.key.id, s.id, s.rate)
				}
				sd.samplers = append(sd.samplers, s)
			}
			se.domains = append(se.domains, sd)
		}
		if fn != nil {
			fn(&se)
		}
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the last exporter", len(r.b))
	}
	return nil
}

// detail is what a DecodeError says, without its prefix.
func detail(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Detail
	}
	return err.Error()
}

// loader applies the exporters of a checked blob to a Decoder, counting what the
// bounds left out.
type loader struct {
	templates, skippedTemplates int
	domains, skippedDomains     int
	skippedExporters            int
}

func (ld *loader) apply(d *Decoder, se *savedExporter) {
	ld.templates += len(se.templates)
	ld.domains += len(se.domains)
	if len(se.templates) == 0 && len(se.domains) == 0 {
		return
	}
	ex := d.exporters[se.addr]
	if ex == nil {
		if len(d.exporters) >= d.cfg.MaxExporters {
			ld.skippedExporters++
			ld.skippedTemplates += len(se.templates)
			ld.skippedDomains += len(se.domains)
			return
		}
		ex = newExporter(se.addr, d.cfg, d.shared)
		ex.lastSeen = se.lastSeen
		d.exporters[se.addr] = ex
	}
	for _, t := range se.templates {
		if ex.templates[t.key] != nil {
			continue // learned from the exporter since start: newer
		}
		if len(ex.templates) >= d.cfg.MaxTemplates || d.shared.templates >= d.cfg.MaxTemplatesTotal {
			ex.drops[ReasonTemplateLimit]++
			ld.skippedTemplates++
			continue
		}
		ex.templates[t.key] = t
		d.shared.templates++
		d.saveGen++
	}
	for i := range se.domains {
		sd := &se.domains[i]
		dm := ex.domain(sd.key.version, sd.key.id)
		if dm == &ex.spareDom {
			ld.skippedDomains++
			continue
		}
		if dm.rate == 0 && sd.rate != 0 {
			dm.rate = sd.rate
			d.saveGen++
		}
		if dm.sysInitMs == 0 && sd.sysInitMs != 0 {
			dm.sysInitMs = sd.sysInitMs
			d.saveGen++
		}
		for _, s := range sd.samplers {
			if !dm.hasSampler(s.id) && dm.setSampler(s.id, s.rate) {
				d.saveGen++
			}
		}
		if ex.rateSrc == srcNone {
			// What the exporter's options data said last, as far as the blob knows.
			if sd.rate != 0 {
				ex.setRate(sd.rate, srcOptions)
			} else if n := len(sd.samplers); n > 0 {
				ex.setRate(sd.samplers[n-1].rate, srcOptions)
			}
		}
	}
}
