package storage

import "github.com/prometheus/client_golang/prometheus"

// collector reads Pebble's metrics when scraped: reading them takes
// Pebble's locks briefly, which a scrape every few seconds can afford and a
// write path could not.
type collector struct {
	s                                          *Store
	compactions, compactDebt, writeAmp, disk   *prometheus.Desc
	walBytes, readAmp, memtableBytes, sstables *prometheus.Desc
}

// Collector exports the store's Pebble metrics.
func (s *Store) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{s: s,
		compactions:   d("hellochat_pebble_compactions_total", "Compactions Pebble has run since the node started."),
		compactDebt:   d("hellochat_pebble_compaction_debt_bytes", "Bytes Pebble estimates it must compact for the LSM to settle."),
		writeAmp:      d("hellochat_pebble_write_amplification", "Bytes written to disk by flushes and compactions per byte written to the WAL, since start."),
		disk:          d("hellochat_pebble_disk_usage_bytes", "Disk space the node's Pebble DB uses (sstables, WAL, manifest)."),
		walBytes:      d("hellochat_pebble_wal_written_bytes_total", "Bytes written to Pebble's write-ahead log."),
		readAmp:       d("hellochat_pebble_read_amplification", "Sublevels and levels a point read may have to look in."),
		memtableBytes: d("hellochat_pebble_memtable_bytes", "Bytes held in memtables."),
		sstables:      d("hellochat_pebble_sstables", "Live sstables."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.compactions, c.compactDebt, c.writeAmp, c.disk, c.walBytes, c.readAmp, c.memtableBytes, c.sstables} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.db.Metrics()
	total := m.Total()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	ch <- prometheus.MustNewConstMetric(c.compactions, prometheus.CounterValue, float64(m.Compact.Count))
	ch <- prometheus.MustNewConstMetric(c.walBytes, prometheus.CounterValue, float64(m.WAL.BytesWritten))
	gauge(c.compactDebt, float64(m.Compact.EstimatedDebt))
	gauge(c.writeAmp, total.WriteAmp())
	gauge(c.disk, float64(m.DiskSpaceUsage()))
	gauge(c.readAmp, float64(m.ReadAmp()))
	gauge(c.memtableBytes, float64(m.MemTable.Size))
	gauge(c.sstables, float64(total.NumFiles))
}

// PebbleReport is Pebble's own table of the LSM (levels, flushes,
// compactions by kind, WAL and memtables), for an operator asking why a
// node spends CPU on its disk.
func (s *Store) PebbleReport() string { return s.db.Metrics().String() }
