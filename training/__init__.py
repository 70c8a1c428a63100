"""fa3d.training"""
