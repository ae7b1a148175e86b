from services.notify.wiring import main

main()
