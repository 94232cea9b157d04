"""Times the two CPU paths (RNNFUSED_CPU_KERNEL=fused|gemm) of the rnnfused ops on the same
inputs, forward and backward, for shapes B,H,T given on the command line. Used to set the
threshold in csrc/cpu/rnn_cpu.cpp choose_path(); see bench/results/NOTES-cpu.md."""
import os, time, torch, sys
import rnnfused
from rnnfused import ops
torch.manual_seed(0)
def med(fn, n=7):
    ts=[]
    for _ in range(n):
        t=time.perf_counter(); fn(); ts.append(time.perf_counter()-t)
    ts.sort(); return ts[n//2]*1e3
shapes = [tuple(map(int, s.split(','))) for s in sys.argv[1:]]
for B,H,T in shapes:
    x = torch.randn(T,B,H); h0=torch.randn(B,H); w_ih=torch.randn(H,H)/H**.5; w_hh=torch.randn(H,H)/H**.5; b=torch.randn(H)
    out,_ = ops.rnn_fwd(x,h0,w_ih,w_hh,b,b)
    go = torch.randn_like(out)
    res=[]
    for path in ["fused","gemm"]:
        os.environ["RNNFUSED_CPU_KERNEL"]=path
        f = med(lambda: ops.rnn_fwd(x,h0,w_ih,w_hh,b,b))
        bw = med(lambda: ops.rnn_bwd(go,None,x,h0,w_ih,w_hh,out,None,False,False,[True,True,True,True]))
        res.append(f"{path}: fwd {f:.2f}ms bwd {bw:.2f}ms")
    print(f"B={B} H={H} T={T}", " | ".join(res), f"B*H*H={B*H*H}", flush=True)
