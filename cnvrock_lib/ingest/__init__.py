"""Store builders: real data in (SPEC §4.2).

Three sources give one row of a store per sample, on a grid of 1 kb bins
(1-based inclusive, like GATK intervals; :func:`cnvrock_lib.reference.make_bins`):

``gatk-tsv``
    GATK ``CollectReadCounts`` TSV files (``@`` header lines, then
    ``CONTIG START END COUNT``). Unit: read starts per bin, as counted by GATK
    with whatever MQ threshold it was run with (declared via ``min_mapq``).
``bam``
    BAM/CRAM files counted here with pysam, like CollectReadCounts: a read is
    counted in the bin that holds its leftmost aligned base
    (``reference_start + 1``, 1-based); unmapped, secondary, supplementary,
    duplicate and QC-fail reads are skipped, as are reads with MAPQ below
    ``min_mapq``. Both mates of a pair are counted. Unit: read starts per bin.
``mosdepth``
    mosdepth ``--by 1000`` regions files (``*.regions.bed[.gz]``; 0-based
    half-open BED). Unit: **mean depth** (covered bases / bin length), stored
    as float32; with ``read_length`` it is converted to approximate read starts
    (depth × bin length / read length). The unit is recorded in ``store.json``.

A store is built either in one go (:func:`build_store`: parallel over samples,
streaming into a preallocated ``counts.npy`` inside a temporary directory that
is renamed into place only when complete) or, at cluster scale, as one
independent job per sample (:func:`count_sample`, a small ``.npz`` per sample)
followed by :func:`gather`. A bad file is reported as *sample, path, reason*
and, by ``on_error``, is either fatal or skipped and listed in the store's
provenance.

Modules: :mod:`.inputs` (manifest, bins, conventions), :mod:`.readers` (per-file readers),
:mod:`.sample` (settings, one sample, per-sample files), :mod:`.build` (whole stores and gather),
:mod:`.writers` (input writers for tests and benchmarks).
"""

from .build import BuildResult, build_store, default_workers, gather
from .inputs import (METHODS, MOSDEPTH_UNIT_NOTE, READ_START_CONVENTION, SKIP_FLAGS, SKIPPED_READS, UNITS,
                     bins_digest, default_min_mapq, parse_tool_versions, read_manifest, resolve_bins)
from .readers import (_LAYOUTS, _parse_tsv_fast, _parse_tsv_slow, _split_tsv, count_bam, read_gatk_tsv,
                      read_mosdepth_regions)
from .sample import CountSettings, count_sample, missing_samples, sample_file
from .writers import write_gatk_tsv

__all__ = ["METHODS", "MOSDEPTH_UNIT_NOTE", "READ_START_CONVENTION", "SKIP_FLAGS", "SKIPPED_READS", "UNITS",
           "BuildResult", "CountSettings", "bins_digest", "build_store", "count_bam", "count_sample",
           "default_min_mapq", "default_workers", "gather", "missing_samples", "parse_tool_versions",
           "read_gatk_tsv", "read_manifest", "read_mosdepth_regions", "resolve_bins", "sample_file",
           "write_gatk_tsv", "_LAYOUTS", "_parse_tsv_fast", "_parse_tsv_slow", "_split_tsv"]
