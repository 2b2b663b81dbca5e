"""CNVRock: gene dosage of AMR genes in Klebsiella pneumoniae from read depth."""

__version__ = "0.1.0"
