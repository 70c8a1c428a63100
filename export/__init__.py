"""fa3d.export"""
